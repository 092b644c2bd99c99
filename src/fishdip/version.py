"""The package version (a run folder records it; pyproject.toml reads it from here)."""

__version__ = "0.1.0"
