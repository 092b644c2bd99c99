"""FISH-DIP as a component of any training loop: which entries of a model learn, and when that changes.

The engine knows nothing of tasks, formats or data files. A client gives it the trainable
parameters, the loss of one sample (``sample_loss(i)``, a scalar with gradients), the losses of a
batch of samples (``batch_losses(ids)``, one per sample, no gradients needed) and the number of
samples; the engine then

- **ranks** every sample by loss and takes the most regressing ones (``rank``),
- scores every entry by **empirical Fisher information** on them, the sum of squared per-sample
  gradients (``fisher``), and keeps the global top ``density`` of entries (a ``SparseMask``),
- **installs** a mask into a sparse optimizer (``sparse_optimizer``: state and writes for the masked
  entries only, so every other entry stays bit-identical), and keeps the union of every mask
  (``touched``: all a sparse fine-tune can have changed),
- says when to **refresh** (``refresh_due``: every ``refresh_steps`` optimizer steps, before the step
  as the FISH-DIP reference does, or after it), and whether a scheduled refresh recomputes the mask
  (``refresh_gate``: always, the paper; only when some sample regressed since the last ranking; never,
  which keeps the first mask: the control that separates a static Fisher mask from the refreshes),
- **saves** the touched entries as a delta (``save_delta``; ``apply_delta`` writes one onto the base
  model, which also merges it).

The methods (``SPARSE_METHODS``, sparse/methods.py, with ``SparseConfig``): ``fish-dip`` (Fisher on
the most regressing samples, refreshed), ``fish`` (Fisher on random samples, one mask), ``random``
and ``random-dip`` (uniformly random entries, once or refreshed), ``sift`` (one mask where the summed
gradient is largest), ``spiel`` (SpIEL-AG: drop the entries that changed least, regrow where the
gradient summed since the last refresh is largest). fishdip's own trainer (training/trainer.py) and
the ``transformers.Trainer`` callback (sparse/hf_trainer.py) are both clients of this class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from fishdip.models.delta import apply_delta, save_delta
from fishdip.sparse.fisher import fisher_scores, gradient_sums
from fishdip.sparse.masks import SparseMask, flat_view, num_to_keep, random_mask, top_k_mask
from fishdip.sparse.methods import SPARSE_METHODS, SparseConfig
from fishdip.sparse.optimizers import MaskedDenseAdafactor, SparseAdafactor, SparseAdamW, SparseOptimizer
from fishdip.sparse.selection import default_num_regressing, most_regressing, regressed_samples, sample_losses

__all__ = ["SPARSE_METHODS", "SparseConfig", "SparseEngine", "sparse_optimizer"]

OPTIMIZERS = ("reference", "adamw", "adafactor")


class OneProcess:
    """The processes the engine runs in: one. Several processes (training/distributed.py's ``Dist``)
    offer the same four members, and then each process ranks and scores its share of the samples."""

    active = False

    def share(self, items: list) -> list:
        return list(items)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def gather(self, obj) -> list:
        return [obj]


def sparse_optimizer(params: dict[str, nn.Parameter], kind: str = "reference", lr: float = 1e-2,
                     weight_decay: float = 0.0, max_grad_norm: float | None = 1.0) -> SparseOptimizer:
    """An optimizer that keeps state for, and writes, only the entries of the mask it is given
    (``SparseEngine.install``). ``reference``: transformers' Adafactor as the FISH-DIP reference runs
    it on masked gradients (scale_parameter, no momentum; ``MaskedDenseAdafactor``); ``adamw``,
    ``adafactor``: AdamW and Adafactor over the masked entries alone. ``max_grad_norm`` clips over
    the masked entries (0 or None: no clipping)."""
    clip = max_grad_norm or None
    if kind == "reference":
        if weight_decay:
            raise ValueError("the reference's Adafactor has no weight decay")
        return MaskedDenseAdafactor(params, lr=lr, scale_parameter=True, max_grad_norm=clip)
    if kind == "adamw":
        return SparseAdamW(params, lr=lr, weight_decay=weight_decay, max_grad_norm=clip)
    if kind == "adafactor":
        return SparseAdafactor(params, lr=lr, relative_step=False, scale_parameter=False,
                               weight_decay=weight_decay, max_grad_norm=clip)
    raise ValueError(f"optimizer {kind!r}: one of {', '.join(OPTIMIZERS)}")


class SparseEngine:
    """Masks for ``params``, chosen by ``config.method`` on ``num_samples`` training samples.

    ``sample_loss(i)``: the scalar loss of sample ``i`` (Fisher scores are its squared gradients).
    ``batch_losses(ids)``: one loss per sample of ``ids`` (the ranking; called without gradients).
    ``model``: the module whose train/eval mode ``rank_mode`` / ``fisher_mode`` switch (None: left
    as it is). ``costs``: a size per sample, so that ranking batches hold samples of similar length
    (little padding). ``batch_size``: samples per ranking batch; ``batches_per_epoch``: what
    ``regressing_samples``' default counts (default: samples / batch_size). ``tokens``: when
    ``batch_losses`` gives summed token losses, each sample's number of target tokens, so that the
    refresh gate compares mean per-token losses (None: ``batch_losses`` gives means already).
    """

    def __init__(self, params: dict[str, nn.Parameter], config: SparseConfig, *,
                 sample_loss: Callable[[int], torch.Tensor], batch_losses: Callable[[list[int]], torch.Tensor],
                 num_samples: int, model: nn.Module | None = None, costs: list[int] | None = None,
                 batch_size: int = 8, batches_per_epoch: int | None = None, tokens: list[int] | None = None,
                 total_steps: int | None = None, dist=None):
        if num_samples < 1:
            raise ValueError("no training samples")
        self.params, self.config, self.model = params, config, model
        self.sample_loss, self.batch_losses, self.num_samples = sample_loss, batch_losses, num_samples
        self.costs = list(costs) if costs is not None else [0] * num_samples
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch or math.ceil(num_samples / batch_size)
        self.dist = dist or OneProcess()
        self.method = SPARSE_METHODS[config.method]
        self.num_keep = num_to_keep(sum(p.numel() for p in params.values()), config.density)
        self.mask: SparseMask | None = None
        # every entry any mask has held: all a sparse fine-tune can have changed (a delta)
        self.touched: dict[str, torch.Tensor] = {}
        self.tokens = torch.tensor(tokens, dtype=torch.float32).clamp(min=1) if tokens is not None else None
        # mean per-token loss of every sample at the last ranking (what --refresh-gate regressing compares)
        self.last_ranking: torch.Tensor | None = None
        self.total_steps = total_steps  # the run's optimizer steps (spiel's regrow rate decays over them)
        # methods that regrow (spiel): each masked entry's value when it joined the mask (aligned with
        # mask.indices), and every entry's gradient summed since the last refresh (one flat buffer)
        self.base_values: dict[str, torch.Tensor] | None = None
        self.gradient_sum: torch.Tensor | None = None
        self._timing: dict = {}  # breakdown of the mask computation in progress

    # -- choosing ---------------------------------------------------------------
    def _dropout(self, mode: str, step: int) -> bool:
        """Whether a ranking or Fisher pass before step ``step`` runs with dropout: ``eval`` never
        (the same samples always give the same mask), ``train`` always, ``reference`` as the FISH-DIP
        reference: the first mask on the model as loaded (eval), refreshes in train mode."""
        return mode == "train" or (mode == "reference" and step > 0)

    def _in_mode(self, mode: str, step: int, work: Callable[[], object]):
        if self.model is None:
            return work()
        was_training = self.model.training
        self.model.train(self._dropout(mode, step))
        try:
            return work()
        finally:
            self.model.train(was_training)

    def rank(self, step: int = 0) -> torch.Tensor:
        """Loss of every sample, without gradients, in batches of ``batch_size`` (larger ones would
        raise the peak memory: a large vocabulary's logits dominate it) sorted by cost so that they
        carry little padding. Each process ranks its share; the losses are summed."""
        started = time.perf_counter()
        try:
            return self._in_mode(self.config.rank_mode, step, self._sample_losses)
        finally:
            self._timing["ranking_seconds"] = round(time.perf_counter() - started, 3)

    def _sample_losses(self) -> torch.Tensor:
        by_cost = sorted(range(self.num_samples), key=lambda i: (self.costs[i], i))
        mine = self.dist.share(by_cost)
        losses = torch.zeros(self.num_samples)
        if mine:
            losses[mine] = sample_losses(lambda pos: self.batch_losses([mine[i] for i in pos]),
                                         [self.costs[i] for i in mine], self.batch_size)
        return self.dist.sum_(losses)

    def gate_open(self, losses: torch.Tensor, info: dict) -> bool:
        """Whether the ranking ``losses`` lead to a new mask (``refresh_gate``): always for
        the first mask and without a gate; with ``regressing`` only if some sample's mean per-token loss
        is above ``GATE_MIN_LOSS`` and higher than at the previous ranking (selection.py). Records the
        decision in ``info``."""
        per_token = losses / self.tokens if self.tokens is not None else losses.clone()
        previous, self.last_ranking = self.last_ranking, per_token
        if self.config.refresh_gate != "regressing" or previous is None or self.mask is None:
            return True
        regressed = regressed_samples(per_token, previous)
        info["regressed"] = regressed
        return bool(regressed)

    def random_samples(self, n: int) -> list[int]:
        """``n`` training samples drawn once for the seed (all of them when there are fewer), sorted."""
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.config.seed))
        return sorted(order[:n].tolist())

    def most_regressing(self, losses: torch.Tensor) -> list[int]:
        """The ``regressing_samples`` highest-loss samples (default: 10 % of an epoch's batches, 3..25)."""
        return most_regressing(losses, self.config.regressing_samples or default_num_regressing(self.batches_per_epoch))

    def random_mask(self, seed: int) -> SparseMask:
        """``num_keep`` uniformly random entries."""
        return random_mask({n: p.numel() for n, p in self.params.items()}, self.num_keep, seed=seed)

    def gradient_mask(self, samples: list[int]) -> SparseMask:
        """The top ``num_keep`` entries by the magnitude of the gradient summed over ``samples``
        (without dropout: the same samples always give the same mask)."""
        return self._top_entries(lambda share: gradient_sums(self.params, self.sample_loss, share), samples,
                                 "eval", 0, "gradient_seconds", magnitude=True)

    @torch.no_grad()
    def observe(self) -> None:
        """Add this step's gradients to every entry's sum (methods that regrow; a no-op otherwise).
        Call it when the step's gradients are complete (summed over processes), before the optimizer
        steps. Costs one float32 copy of the trainable parameters."""
        if not self.method.regrows:
            return
        if self.gradient_sum is None:
            first = next(iter(self.params.values()))
            self.gradient_sum = torch.zeros(sum(p.numel() for p in self.params.values()), device=first.device)
        for view, p in zip(self._gradient_views(), self.params.values()):
            if p.grad is not None:
                view.add_(p.grad.reshape(-1).float())

    def _gradient_views(self) -> list[torch.Tensor]:
        return list(self.gradient_sum.split([p.numel() for p in self.params.values()]))

    @torch.no_grad()
    def drop_and_regrow(self, step: int) -> tuple[SparseMask, dict]:
        """SpIEL-AG's update: the ``regrow_rate * (1 - step / total_steps)`` share of the mask whose
        change from its base value is smallest leaves it; as many entries outside what stays, with the
        largest summed gradient since the last refresh, join it (a dropped entry may rejoin at once)."""
        rate = self.config.regrow_rate * (1 - step / self.total_steps if self.total_steps else 1.0)
        n = min(int(self.num_keep * rate), self.num_keep)
        names = list(self.params)
        change = torch.cat([(self.params[k].detach().reshape(-1)[self.mask.indices[k]].float()
                             - self.base_values[k]).abs() for k in names])
        stays = torch.ones_like(change, dtype=torch.bool)
        if n:
            stays[torch.topk(change, n, largest=False).indices] = False
        if self.gradient_sum is None:  # no step observed: nothing to regrow by, the mask stays
            return self.mask, {"dropped": 0, "regrown": 0}
        scores = self.gradient_sum.abs_()  # in place: the sum is dropped below and starts again
        offsets = torch.tensor([0] + [self.params[k].numel() for k in names], device=scores.device).cumsum(0)
        flat_mask = torch.cat([self.mask.indices[k] + offsets[i] for i, k in enumerate(names)])
        scores[flat_mask[stays]] = math.inf  # what stays stays
        views = dict(zip(names, scores.split([self.params[k].numel() for k in names])))
        mask = top_k_mask(views, self.num_keep)
        self.gradient_sum = None
        return mask, {"dropped": n, "regrown": self.num_keep - mask.overlap(self.mask), "drop_rate": round(rate, 4)}

    @torch.no_grad()
    def _track_base(self, mask: SparseMask) -> None:
        """Methods that regrow: undo the change of entries that leave the mask (back to their base
        value) and record the base value of entries that join it (their value now: never trained, or
        undone)."""
        old, base = self.mask, self.base_values or {}
        new_base = {}
        for name, idx in mask.indices.items():
            flat = self.params[name].detach().view(-1)
            values = flat[idx].float()
            if old is not None and old.indices[name].numel():
                before = old.indices[name]
                pos = torch.searchsorted(before, idx).clamp(max=before.numel() - 1)
                kept = before[pos] == idx
                values[kept] = base[name][pos[kept]]
                left = ~torch.isin(before, idx)
                flat[before[left]] = base[name][left].to(flat.dtype)
            new_base[name] = values
        self.base_values = new_base

    def state_dict(self) -> dict:
        """What a continued run needs besides the mask and the touched entries (training/checkpoint.py)."""
        return {"ranking": self.last_ranking, "base_values": self.base_values, "gradient_sum": self.gradient_sum}

    def load_state_dict(self, state: dict) -> None:
        self.last_ranking = state.get("ranking")
        self.base_values, self.gradient_sum = state.get("base_values"), state.get("gradient_sum")

    def fisher(self, samples: list[int], step: int = 0) -> SparseMask:
        """The top ``num_keep`` entries by empirical Fisher information on ``samples``."""
        return self._top_entries(lambda share: fisher_scores(self.params, self.sample_loss, share, self.config.fisher),
                                 samples, self.config.fisher_mode, step, "fisher_seconds")

    def _top_entries(self, score: Callable[[list[int]], dict[str, torch.Tensor]], samples: list[int], mode: str,
                     step: int, timing: str, magnitude: bool = False) -> SparseMask:
        """The top ``num_keep`` entries by ``score`` of ``samples`` (per-entry sums in one flat buffer;
        each process scores its share and the sums are added up; ``magnitude``: of the summed values)."""
        for p in self.params.values():
            p.requires_grad_(True)
        started = time.perf_counter()
        scored = self._in_mode(mode, step, lambda: score(self.dist.share(samples)))
        flat = flat_view(list(scored.values()))
        if self.dist.active:  # the scores are views of one flat buffer: one all-reduce
            self.dist.sum_(flat)
        if magnitude:
            flat.abs_()
        self._timing[timing] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        mask = top_k_mask(scored, self.num_keep)
        self._timing["top_k_seconds"] = round(time.perf_counter() - started, 3)
        self._check_same_mask(mask)
        return mask

    def _check_same_mask(self, mask: SparseMask) -> None:
        """Every process must train the same entries: compare a cheap checksum of the mask (recorded
        in one process too, so that runs can be compared)."""
        digest = self._timing["mask_checksum"] = mask.checksum()
        sums = self.dist.gather(digest)
        if len(set(sums)) > 1:
            raise RuntimeError(f"the processes selected different masks (checksums {sums}); "
                               "their weights or data differ")

    def choose(self, step: int) -> tuple[SparseMask, dict]:
        """The method's mask for the steps from ``step`` on, with a record of the choice (which
        samples, their losses, where the mask lives, overlap with the previous one, timings). A
        closed refresh gate keeps the current mask: the record says ``"kept": true`` and nothing
        needs installing."""
        started = time.perf_counter()
        self._timing = {}
        mask, info = self.method.choose(self, step)
        if mask is None:
            info.update(self._timing, step=step, kept=True, seconds=round(time.perf_counter() - started, 3))
            return self.mask, info
        info = {"step": step, **info, "entries_per_parameter": {
            n: int(ix.numel()) for n, ix in mask.indices.items() if ix.numel()}}
        if self.mask is not None:
            info["overlap_with_previous"] = mask.overlap(self.mask) / self.num_keep
        info.update(self._timing, seconds=round(time.perf_counter() - started, 3))
        return mask, info

    # -- training with it ---------------------------------------------------------
    def install(self, mask: SparseMask, optimizer: SparseOptimizer | None = None) -> None:
        """Make ``mask`` the one that learns (in ``optimizer``, carrying state for entries that stay)."""
        if mask is self.mask:  # a kept mask (closed refresh gate): the optimizer's state stays as it is
            return
        if self.method.regrows:
            self._track_base(mask)
        self.mask = mask
        if optimizer is not None:
            optimizer.set_mask(mask)
        for name, idx in mask.indices.items():
            old = self.touched.get(name)
            self.touched[name] = idx.clone() if old is None else torch.unique(torch.cat([old, idx.to(old.device)]))

    @property
    def touched_entries(self) -> int:
        return sum(int(t.numel()) for t in self.touched.values())

    def refresh_due(self, step: int, total_steps: int | None = None) -> bool:
        """After ``step`` completed optimizer steps, is the mask recomputed for the next one?
        ``before``: after N-1, 2N-1, ... steps (the reference counts a step when it starts, so its
        mask for step 100 is computed after 99); ``after``: after N, 2N, .... Never after the last,
        and never with ``refresh_gate`` ``never``."""
        if not self.method.refresh or self.config.refresh_gate == "never" or \
                (total_steps is not None and step >= total_steps):
            return False
        return (step + (self.config.refresh_phase == "before")) % self.config.refresh_steps == 0

    def save_delta(self, path: str | Path, model: nn.Module) -> int:
        """Write the touched entries' current values of ``model`` (a ``delta.safetensors``)."""
        return save_delta(model, self.touched, Path(path))

    @staticmethod
    def apply_delta(model: nn.Module, path: str | Path) -> None:
        """Write a delta onto its base ``model``: the fine-tuned (merged) model."""
        apply_delta(model, Path(path))
