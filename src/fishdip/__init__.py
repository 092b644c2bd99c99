"""fishdip: sample-aware dynamic sparse fine-tuning (FISH-DIP) for unified sequence labeling.

The Python API (``fishdip.train``, ``fishdip.load``) lives in ``fishdip.api``; it is imported on
first use, so ``import fishdip`` and the command line stay quick.
"""

from fishdip.version import __version__

__all__ = ["train", "load", "Comparison", "Predictor", "__version__"]


def __getattr__(name: str):
    if name in ("train", "load", "Comparison", "Predictor"):
        from fishdip import api

        return getattr(api, name)
    raise AttributeError(f"module 'fishdip' has no attribute {name!r}")
