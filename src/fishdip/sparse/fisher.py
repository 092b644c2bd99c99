"""Empirical Fisher information: per-sample squared gradients, summed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fishdip.sparse.choices import FISHER_KINDS


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
        raise ValueError(f"unknown Fisher score {kind!r} (one of {', '.join(FISHER_KINDS)})")
    # one flat buffer (top_k_mask selects on it without a copy), accumulated where the gradients
    # are (no host round trip per sample on a GPU)
    first = next(iter(params.values()))
    flat = torch.zeros(sum(p.numel() for p in params.values()), dtype=torch.float32, device=first.device)
    scores = {name: view.view(p.shape) for (name, p), view in
              zip(params.items(), flat.split([p.numel() for p in params.values()]))}
    by_param = {p: scores[name] for name, p in params.items()}

    def add(p: nn.Parameter) -> None:
        # as soon as a parameter's gradient is complete: add it and free it, so that a backward
        # pass holds one dense gradient at a time
        g = p.grad.float()
        by_param[p].add_(g * g if kind == "square" else g.abs())
        p.grad = None

    hooks = [p.register_post_accumulate_grad_hook(add) for p in params.values()]
    try:
        for p in params.values():
            p.grad = None
        for i in samples:
            sample_loss(i).backward()
    finally:
        for hook in hooks:
            hook.remove()
        for p in params.values():
            p.grad = None
    return scores
