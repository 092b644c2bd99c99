"""Empirical Fisher information: per-sample squared gradients, summed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FISHER_KINDS = ("square", "abs")


def fisher_scores(
    params: dict[str, nn.Parameter],
    sample_loss: Callable[[int], torch.Tensor],
    samples: list[int],
    kind: str = "square",
) -> dict[str, torch.Tensor]:
    """Score each entry by sum over ``samples`` of ``grad**2`` (or ``|grad|``).

    ``sample_loss(i)`` returns the scalar loss of sample ``i``. Gradients are taken
    one sample at a time: summing squares of a *batch* gradient would be the
    squared sum, not the empirical Fisher.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"--fisher must be one of {FISHER_KINDS}, got {kind!r}")
    # accumulate where the gradients are: no host round trip per sample on a GPU
    scores = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    for i in samples:
        for p in params.values():
            p.grad = None
        sample_loss(i).backward()
        for name, p in params.items():
            if p.grad is None:
                continue
            g = p.grad.detach().float()
            scores[name] += g * g if kind == "square" else g.abs()
    for p in params.values():
        p.grad = None
    return scores
