"""Readers, dataset registry, low-resource sampling and fetching."""
