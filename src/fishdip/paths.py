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
    """Folders searched for ``<dataset>/``: --data-dir alone when it is given (a dataset is read from
    exactly one place, never from a fallback without a word), else $FISHDIP_DATA_DIR, then the cache."""
    if data_dir:
        return [Path(data_dir)]
    roots: list[Path] = []
    if os.environ.get("FISHDIP_DATA_DIR"):
        roots.append(Path(os.environ["FISHDIP_DATA_DIR"]))
    roots.append(cache_dir() / "data")
    return roots
