"""The sparse engine's methods: how each chooses its mask and when, one ``SparseMethod`` row each.

A row's chooser is a function of the engine and the step; it returns the new mask (or None to keep
the current one) and a record of the choice. Choosers only combine the engine's capabilities
(rank samples, score Fisher information, sum gradients, draw random entries, drop and regrow), so
this registry imports no torch: the options and the CLI read its flags (which options a method
reads) before anything heavy is loaded. A new sparse method is one row here and one ``Method`` row
in training/methods.py; the options it reads follow from its flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fishdip.options import ConfigError, check_fields, option
from fishdip.sparse.choices import DROPOUT_MODES, FISHER_KINDS, GATE_MIN_LOSS, REFRESH_GATES, REFRESH_PHASES

if TYPE_CHECKING:
    from fishdip.sparse.engine import SparseEngine

# a chooser returns the new mask, or None to keep the current one (a closed refresh gate), and a record
Chooser = Callable[["SparseEngine", int], tuple[Any, dict]]


@dataclass(frozen=True)
class SparseMethod:
    choose: Chooser
    refresh: bool  # chooses again every refresh_steps optimizer steps
    ranks: bool = False  # ranks the samples by loss at each choice (--rank-by, --rank-mode, --refresh-gate ...)
    fisher: bool = False  # scores Fisher information (--fisher, --fisher-mode)
    draws_samples: bool = False  # computes its (first) mask on --fish-samples random training samples
    # drops and regrows entries: the engine keeps each masked entry's base value, undoes the change of
    # an entry that leaves the mask, and sums every entry's gradient between refreshes (``observe``;
    # the optimizer then keeps dense gradients instead of gathering the masked entries in backward)
    regrows: bool = False


def _short(x) -> float:
    return float(f"{float(x):.4g}")  # 4 significant digits: a fitted sample's 1e-5 is not recorded as 0


def fisher_on_random_samples(engine: SparseEngine, step: int) -> tuple[Any, dict]:
    """FISH mask (Sung et al. 2021): Fisher scores on ``fish_samples`` samples drawn once."""
    samples = engine.random_samples(engine.config.fish_samples)
    return engine.fisher(samples, step), {"samples": samples}


def fisher_on_regressing_samples(engine: SparseEngine, step: int) -> tuple[Any, dict]:
    """FISH-DIP: rank every training sample by loss, Fisher scores on the highest-loss ones (unless
    ``refresh_gate`` is ``regressing`` and no sample regressed since the last ranking)."""
    losses = engine.rank(step)
    info = {"mean_train_loss": _short(losses.mean()),
            "ranking_losses": [_short(x) for x in losses]}  # every sample's, for the report's plots
    if not engine.gate_open(losses, info):
        return None, info
    samples = engine.most_regressing(losses)
    return engine.fisher(samples, step), {"samples": samples, "sample_losses": [_short(losses[i]) for i in samples],
                                          **info}


def uniformly_random(engine: SparseEngine, step: int) -> tuple[Any, dict]:
    """Uniformly random entries; a refreshed random mask draws anew at every refresh."""
    seed = engine.config.seed if step == 0 else engine.config.seed * 1_000_003 + step
    return engine.random_mask(seed), {}


def gradient_magnitude(engine: SparseEngine, step: int) -> tuple[Any, dict]:
    """SIFT (Song et al. 2023, "Sparse is enough in fine-tuning"): the entries where the gradient
    summed over the training samples (``fish_samples`` of them, drawn once) is largest in magnitude."""
    samples = engine.random_samples(engine.config.fish_samples)
    return engine.gradient_mask(samples), {"samples": samples}


def drop_and_regrow(engine: SparseEngine, step: int) -> tuple[Any, dict]:
    """SpIEL-AG (Ansell et al. 2024): the first mask as SIFT's; at each refresh the entries whose
    change from the base model is smallest leave the mask (their change is undone) and as many
    entries outside it whose gradient, summed over the steps since the last refresh, is largest in
    magnitude join it (starting from their base value). The share that changes decays linearly
    over training from ``regrow_rate``."""
    if engine.mask is None:
        return gradient_magnitude(engine, step)
    return engine.drop_and_regrow(step)


SPARSE_METHODS: dict[str, SparseMethod] = {
    "fish-dip": SparseMethod(fisher_on_regressing_samples, refresh=True, ranks=True, fisher=True),
    "fish": SparseMethod(fisher_on_random_samples, refresh=False, fisher=True, draws_samples=True),
    "random": SparseMethod(uniformly_random, refresh=False),
    "random-dip": SparseMethod(uniformly_random, refresh=True),
    "sift": SparseMethod(gradient_magnitude, refresh=False, draws_samples=True),
    "spiel": SparseMethod(drop_and_regrow, refresh=True, draws_samples=True, regrows=True),
}


def _sparse_methods() -> tuple[str, ...]:
    return tuple(SPARSE_METHODS)  # read when checked: a method registered later counts


@dataclass
class SparseConfig:
    """How the engine chooses and refreshes masks: the one declaration of the sparse options (the
    training options, training/config.py, carry these fields). The defaults are the FISH-DIP
    reference's."""

    method: str = option("fish-dip", "how masks are chosen: " + ", ".join(SPARSE_METHODS), choices=_sparse_methods)
    density: float = option(0.01, "fraction of parameter entries that learn, e.g. 0.01 = 1 % (sparse methods)",
                            above=0, max=1)
    refresh_steps: int = option(100, "refreshed methods (fish-dip, random-dip, spiel): a new mask every N optimizer "
                                "steps", min=1)
    refresh_phase: str = option("before", "refreshed methods: recompute the mask after optimizer steps N, 2N, ... "
                                "(after), or before them, i.e. after N-1, 2N-1, ... steps (before: the reference's "
                                "phase; what --recipe paper uses)", choices=REFRESH_PHASES)
    regressing_samples: int | None = option(None, "fish-dip: samples the mask is computed on (default: 10 % of "
                                            "batches per epoch, clamped to 3..25)", min=1)
    fish_samples: int = option(128, "fish, sift, spiel: training samples (drawn once) the first mask is computed "
                               "on", min=1)
    fisher: str = option("square", "Fisher score per entry: sum of squared (square) or absolute (abs) per-sample "
                         "gradients", choices=FISHER_KINDS)
    refresh_gate: str = option("none", "fish-dip, at each scheduled refresh: none (recompute the mask: the paper), "
                               "regressing (rank the samples as always; recompute only if some sample's mean "
                               f"per-token loss is above {GATE_MIN_LOSS:g} and higher than at the previous ranking, "
                               "else keep the mask and record the skip), never (keep the first mask for the whole "
                               "run: the control that tells a static Fisher mask's share from the refreshes')",
                               choices=REFRESH_GATES)
    rank_mode: str = option("reference", "fish-dip: rank samples without dropout (eval), with it (train), or as the "
                            "reference (reference: eval for the first mask, the model as loaded, train for every "
                            "refresh; what --recipe paper uses)", choices=DROPOUT_MODES)
    fisher_mode: str = option("reference", "Fisher scores without dropout (eval), with it (train), or as the "
                              "reference (eval for the first mask, train for every refresh; what --recipe paper "
                              "uses)", choices=DROPOUT_MODES)
    regrow_rate: float = option(0.2, "spiel: share of the mask's entries dropped and regrown at the first refresh, "
                                "decaying linearly to 0 at the end of training (SpIEL's initial reselection rate)",
                                above=0, max=1)
    seed: int = option(0, "seed of the samples a first mask is computed on and of random masks", min=0)

    def __post_init__(self) -> None:
        check_fields(self)
        method = SPARSE_METHODS[self.method]
        if self.refresh_gate != "none" and not method.refresh:
            raise ConfigError(f"--refresh-gate {self.refresh_gate}: {self.method} never refreshes its mask")
        if self.refresh_gate == "regressing" and not method.ranks:
            raise ConfigError(f"--refresh-gate regressing: {self.method} does not rank samples by loss")
