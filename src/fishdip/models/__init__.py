"""Loading pretrained models and turning (source, target) text pairs into losses and outputs."""
