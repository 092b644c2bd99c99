"""Numeric precision of training and evaluation: float32, or bfloat16 / float16 autocast.

Weights, gradients and optimizer state stay float32 (the "master" copy); ``torch.autocast`` runs the
matrix products in the low precision. A CPU with AVX-512 bf16 / AMX runs those natively (how much
faster a step is: benchmarks/efficiency.py and the README's table); a CPU without native bf16 has no
fast bf16 kernels, so ``auto`` picks float32 there.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the options read PRECISIONS without loading it
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """AVX-512 with bf16 instructions (or AMX): oneDNN then runs bf16 matrix products natively."""
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and \
        bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def machine(device: torch.device) -> str:
    """What ran the arithmetic, e.g. ``torch 2.13.0+cpu, cpu AVX2, 1 thread``: CPU kernels differ in
    their last digits between instruction sets and thread counts (and sparse masks can amplify that),
    so results record both."""
    import torch

    if device.type == "cuda":
        where = f"cuda {torch.cuda.get_device_name(device)}"
    else:
        threads = torch.get_num_threads()
        where = f"{device.type} {torch.backends.cpu.get_cpu_capability()}, {threads} thread{'s' * (threads > 1)}"
    return f"torch {torch.__version__}, {where}"


def resolve(precision: str, device: torch.device) -> str:
    """``auto`` -> what is fast and safe on ``device``; anything else is checked and returned."""
    if precision == "auto":
        if device.type == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32 on {device.type}")
    return precision


def autocast(precision: str, device: torch.device):
    """The context forward passes run in (``precision`` already resolved)."""
    if precision == "fp32":
        return nullcontext()
    import torch

    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """float16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
    import torch

    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
