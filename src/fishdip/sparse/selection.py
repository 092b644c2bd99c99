"""Sample-aware selection: which training samples the next mask should serve."""

from __future__ import annotations

from collections.abc import Callable

import torch


def default_num_regressing(num_batches: int) -> int:
    """The paper's default: 10 % of the batches in an epoch, clamped to 3..25."""
    return min(25, max(3, round(0.1 * num_batches)))


@torch.no_grad()
def sample_losses(batch_loss: Callable[[list[int]], torch.Tensor], num_samples: int,
                  batch_size: int) -> torch.Tensor:
    """Loss of every training sample, computed in batches without gradients."""
    losses = []
    for start in range(0, num_samples, batch_size):
        losses.append(batch_loss(list(range(start, min(start + batch_size, num_samples)))).float().cpu())
    return torch.cat(losses)


def most_regressing(losses: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` highest-loss samples (ties -> lower index), highest first."""
    n = min(n, losses.numel())
    order = sorted(range(losses.numel()), key=lambda i: (-float(losses[i]), i))
    return order[:n]
