"""Low-resource subsets: the same episode gives every method the same sentences."""

from __future__ import annotations

import random

SUBSET_RULES = ("random", "tanl")  # how an episode draws its subset (sample_indices)


def subset_size(total: int, *, fraction: float | None = None, size: int | None = None) -> int:
    if size is not None and fraction is not None:
        raise ValueError("give a training size or a training fraction, not both")
    if size is not None:
        if size < 1:
            raise ValueError(f"a training size must be >= 1, got {size}")
        return min(size, total)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"a training fraction must be in (0, 1], got {fraction}")
        return max(1, round(total * fraction))
    return total


def sample_indices(
    total: int, episode: int, *, fraction: float | None = None, size: int | None = None, rule: str = "random"
) -> list[int]:
    """Indices of the training subset for ``episode``, seeded by the episode number.

    ``random``: a seeded sample, sorted. ``tanl``: TANL's rule (its ``BaseDataset``, which the FISH-DIP
    reference trains with): ``random.seed(episode)``, shuffle all indices, keep the first
    ``round(fraction * total)`` (or ``size``), in that order."""
    k = subset_size(total, fraction=fraction, size=size)
    if rule == "tanl":
        rng = random.Random(episode)  # the same stream as random.seed(episode) followed by random.shuffle
        indices = list(range(total))
        rng.shuffle(indices)
        return indices[:k]
    if rule != "random":
        raise ValueError(f"unknown subset rule {rule!r} ({', '.join(SUBSET_RULES)})")
    if k == total:
        return list(range(total))
    return sorted(random.Random(episode).sample(range(total), k))
