"""Empirical Fisher information (per-sample squared gradients, summed) and summed gradients."""

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
    return _summed(params, sample_loss, samples, (lambda g: g * g) if kind == "square" else torch.abs)


def gradient_sums(params: dict[str, nn.Parameter], sample_loss: Callable[[int], torch.Tensor],
                  samples: list[int]) -> dict[str, torch.Tensor]:
    """The gradient of the summed loss over ``samples`` (signed; SIFT's and SpIEL's scores are its
    magnitude), one sample at a time like ``fisher_scores`` (no batch of them is held at once)."""
    return _summed(params, sample_loss, samples, lambda g: g)


def _summed(params: dict[str, nn.Parameter], sample_loss: Callable[[int], torch.Tensor], samples: list[int],
            term: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum over ``samples`` of ``term(gradient of the sample's loss)`` per entry."""
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
        by_param[p].add_(term(p.grad.float()))
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
