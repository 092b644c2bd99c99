"""Where fishdip looks for data and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FISHDIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/fishdip``, else ``~/.cache/fishdip``."""
    if os.environ.get("FISHDIP_CACHE_DIR"):
        return Path(os.environ["FISHDIP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fishdip"


def data_roots(data_dir: Path | str | None = None) -> list[Path]:
    """Folders searched for ``<dataset>/``, in order: --data-dir, $FISHDIP_DATA_DIR, the cache."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("FISHDIP_DATA_DIR"):
        roots.append(Path(os.environ["FISHDIP_DATA_DIR"]))
    roots.append(cache_dir() / "data")
    return roots
