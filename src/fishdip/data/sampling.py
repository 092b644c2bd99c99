"""Low-resource subsets: the same episode gives every method the same sentences."""

from __future__ import annotations

import random


def subset_size(total: int, *, fraction: float | None = None, size: int | None = None) -> int:
    if size is not None and fraction is not None:
        raise ValueError("give --train-size or --train-fraction, not both")
    if size is not None:
        if size < 1:
            raise ValueError(f"--train-size must be >= 1, got {size}")
        return min(size, total)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
        return max(1, round(total * fraction))
    return total


def sample_indices(
    total: int, episode: int, *, fraction: float | None = None, size: int | None = None
) -> list[int]:
    """Indices of the training subset for ``episode`` (seeded by the episode number, sorted)."""
    k = subset_size(total, fraction=fraction, size=size)
    if k == total:
        return list(range(total))
    return sorted(random.Random(episode).sample(range(total), k))
