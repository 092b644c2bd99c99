"""Prediction (batched generation + decoding) and metrics."""
