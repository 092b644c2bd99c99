"""Loading pretrained models and turning (source, target) text pairs into losses and outputs."""

from fishdip.models.loading import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
