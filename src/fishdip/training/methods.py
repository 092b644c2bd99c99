"""The fine-tuning methods: one entry each, the only place a method is defined.

A method says which entries learn (``choose``: a sparse mask, or None for every parameter), whether
that choice is made again every ``--refresh-steps`` optimizer steps (``refresh``), and its default
learning rate. The trainer, the options and the run folders read everything from here; a new mask
method is one ``Method`` entry plus, if it chooses entries a new way, one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fishdip.sparse.masks import SparseMask, random_mask
from fishdip.sparse.selection import default_num_regressing, most_regressing

if TYPE_CHECKING:  # the trainer calls the choosers with itself; only the type is needed here
    from fishdip.training.trainer import Trainer

# chooser(trainer, step) -> the mask, and what to record about the choice
Chooser = Callable[["Trainer", int], tuple[SparseMask, dict]]


def fisher_on_random_samples(trainer: Trainer, step: int) -> tuple[SparseMask, dict]:
    """FISH mask (Sung et al. 2021): Fisher scores on ``--fish-samples`` samples drawn once."""
    cfg = trainer.cfg
    order = torch.randperm(len(trainer.pairs), generator=torch.Generator().manual_seed(cfg.seed))
    samples = sorted(order[: cfg.fish_samples].tolist())
    return trainer.fisher_mask(samples), {"samples": samples}


def fisher_on_regressing_samples(trainer: Trainer, step: int) -> tuple[SparseMask, dict]:
    """FISH-DIP: rank every training sample by loss, Fisher scores on the highest-loss ones."""
    cfg = trainer.cfg
    losses = trainer.rank_samples()
    n = cfg.regressing_samples or default_num_regressing(trainer.micro_batches_per_epoch)
    samples = most_regressing(losses, n)
    return trainer.fisher_mask(samples), {
        "samples": samples, "sample_losses": [round(float(losses[i]), 4) for i in samples],
        "mean_train_loss": round(float(losses.mean()), 4)}


def uniformly_random(trainer: Trainer, step: int) -> tuple[SparseMask, dict]:
    """Uniformly random entries; a refreshed random mask draws anew at every refresh."""
    sizes = {n: p.numel() for n, p in trainer.params.items()}
    seed = trainer.cfg.seed if step == 0 else trainer.cfg.seed * 1_000_003 + step
    return random_mask(sizes, trainer.num_keep, seed=seed), {}


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    default_lr: float  # when --lr is not given
    choose: Chooser | None = None  # None: every parameter learns (dense optimizer)
    refresh: bool = False  # choose again every --refresh-steps optimizer steps

    @property
    def sparse(self) -> bool:
        return self.choose is not None


# Sparse masks train 1 % of the entries and need a larger step than full fine-tuning (Sung et al.
# 2021 make the same observation for FISH masks).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", "every parameter learns", 1e-4),
    Method("fish", "one Fisher mask, computed before training on --fish-samples samples", 1e-3,
           fisher_on_random_samples),
    Method("fish-dip", "a Fisher mask on the most regressing samples, recomputed every --refresh-steps", 1e-3,
           fisher_on_regressing_samples, refresh=True),
    Method("random", "one uniformly random mask of the same size", 1e-3, uniformly_random),
    Method("random-dip", "a new random mask every --refresh-steps (ablation: dynamic, but not Fisher)", 1e-3,
           uniformly_random, refresh=True),
)}
