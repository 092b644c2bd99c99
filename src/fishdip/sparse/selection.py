"""Sample-aware selection: which training samples the next mask should serve."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fishdip.sparse.choices import GATE_MIN_LOSS


def default_num_regressing(num_batches: int) -> int:
    """The paper's default: 10 % of the batches in an epoch, clamped to 3..25."""
    return min(25, max(3, round(0.1 * num_batches)))


@torch.no_grad()
def sample_losses(batch_loss: Callable[[list[int]], torch.Tensor], lengths: list[int],
                  batch_size: int) -> torch.Tensor:
    """Loss of every training sample, computed without gradients in batches of similar length
    (sorted by ``lengths``: little padding); returned in the samples' own order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    losses = torch.empty(len(lengths))
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        losses[ids] = batch_loss(ids).float().cpu()
    return losses


def most_regressing(losses: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` highest-loss samples (ties -> lower index), highest first."""
    n = min(n, losses.numel())
    order = sorted(range(losses.numel()), key=lambda i: (-float(losses[i]), i))
    return order[:n]


def regressed_samples(per_token: torch.Tensor, previous: torch.Tensor, min_loss: float = GATE_MIN_LOSS) -> list[int]:
    """``--refresh-gate regressing``'s rule: the samples whose mean per-token loss is above ``min_loss``
    and higher than at the previous ranking (ascending indices)."""
    return ((per_token > min_loss) & (per_token > previous)).nonzero().flatten().tolist()
