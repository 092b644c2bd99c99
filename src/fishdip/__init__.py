"""fishdip: sample-aware dynamic sparse fine-tuning (FISH-DIP) for unified sequence labeling."""

__version__ = "0.1.0"
