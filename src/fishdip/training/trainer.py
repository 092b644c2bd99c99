"""The training loop: micro-batches, gradient accumulation, the learning-rate schedule, and the
method's mask (training/methods.py) installed before training and, for refreshed methods, every
``--refresh-steps`` optimizer steps. Sparse methods train with the sparse optimizers (state and
writes for the masked entries only); ``full`` with torch's AdamW or transformers' Adafactor.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup
from transformers.optimization import Adafactor

from fishdip.models.encoding import encode_pair, pad_batch, pad_labels_to, padded_positions
from fishdip.models.loading import LoadedModel
from fishdip.models.losses import per_sample_loss, token_losses
from fishdip.options import ConfigError
from fishdip.sparse.engine import SparseConfig, SparseEngine, sparse_optimizer
from fishdip.sparse.masks import SparseMask, num_to_keep
from fishdip.training import precision as amp
from fishdip.training.checkpoint import Checkpoint
from fishdip.training.config import RECIPE_SETTINGS, TrainConfig
from fishdip.training.distributed import SINGLE, Dist

STOP_PATIENCE = 20  # --stop-loss: steps in a row under the threshold (the reference's patience)


@dataclass
class TrainRecord:
    """What a training run did: its steps, losses, masks, curve and costs (results.json's \"train\")."""

    steps: int = 0
    seconds: float = 0.0
    total_params: int = 0
    trainable_params: int = 0
    losses: list[dict] = field(default_factory=list)  # {"step", "loss", "lr"} per optimizer step
    refreshes: list[dict] = field(default_factory=list)  # one per mask computation
    optimizer_state_bytes: int = 0
    precision: str = "fp32"  # what --precision resolved to on this device
    refresh_seconds: float = 0.0  # time spent computing masks (ranking, Fisher scores, top-k)
    train_tokens: int = 0  # tokens of the training samples the forward passes ran over (no padding)
    padded_tokens: int = 0  # positions those passes ran over, padding included (--group-by-length: fewer)
    touched_entries: int = 0  # entries that any mask let learn (union over refreshes)
    stopped_early: int | None = None  # the step --stop-loss ended training at
    curve: list[dict] = field(default_factory=list)  # --eval-every: {"step", "epoch", "train_loss", "metrics"}
    resumed_at: list[int] = field(default_factory=list)  # steps a stopped run continued from (checkpoint.py)
    seconds_before_resume: float = 0.0  # training seconds spent before the last continue (part of seconds)
    machines: list[str] = field(default_factory=list)  # precision.machine() of the start and of each continue


@dataclass
class Curve:
    """``--eval-every``: score the model every ``every`` optimizer steps with ``evaluate`` (the model
    in eval mode; returns the metrics). A failing point is recorded with its error, never fatal."""

    every: int
    evaluate: Callable[[], dict]


def build_optimizer(cfg: TrainConfig, params: dict[str, torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of a config (its recipe resolved): a sparse one (sparse/engine.py) for sparse methods."""
    cfg = cfg.resolved()
    paper = cfg.recipe in RECIPE_SETTINGS  # the reference's Adafactor: scale_parameter, its masked dense update
    if cfg.spec.sparse:
        return sparse_optimizer(params, "reference" if paper else cfg.optimizer, lr=cfg.effective_lr,
                                weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params.values(), lr=cfg.effective_lr, weight_decay=cfg.weight_decay)
    return Adafactor(list(params.values()), lr=cfg.effective_lr, relative_step=False, scale_parameter=paper,
                     warmup_init=False, weight_decay=cfg.weight_decay)


class Trainer:
    """Trains one model on one list of (source, target) pairs."""

    def __init__(self, loaded: LoadedModel, pairs: list[tuple[str, str]], cfg: TrainConfig,
                 progress: bool = True, gather_grads: bool = True, dist: Dist = SINGLE,
                 checkpoint: Checkpoint | None = None, curve: Curve | None = None, log=print):
        cfg = cfg.resolved()  # a TrainConfig checks itself when made
        if not pairs:
            raise ValueError("no training examples")
        self.loaded, self.pairs, self.cfg, self.progress = loaded, pairs, cfg, progress
        self.method = cfg.spec
        if self.method.wrap is not None:  # adapters: from here on only their weights require gradients
            loaded.model = self.method.wrap(loaded.model, cfg)
        self.gather_grads = gather_grads  # False only to measure what gathering saves (benchmarks)
        # several processes: --batch-size is per process, a micro-batch spans all of them (distributed.py)
        self.dist = dist
        self.global_batch = cfg.batch_size * dist.world
        self.params = {n: p for n, p in loaded.model.named_parameters() if p.requires_grad}
        self.device = next(loaded.model.parameters()).device
        self.precision = amp.resolve(cfg.precision, self.device)
        # tokenized once: training batches and every refresh's ranking reuse these
        self.encoded = [encode_pair(loaded, s, t, cfg.max_length) for s, t in pairs]
        # --loss-positions padded: the reference's loss over every padded label position (encoder-decoders)
        self.padded = cfg.loss_positions == "padded" and loaded.is_encoder_decoder
        if cfg.loss_positions == "padded" and not loaded.is_encoder_decoder and cfg.recipe not in RECIPE_SETTINGS:
            raise ConfigError("padded loss positions: only for encoder-decoder models (a decoder-only model's "
                              "labels are not padded); use target")
        self.micro_batches_per_epoch = math.ceil(len(pairs) / self.global_batch)
        self.steps_per_epoch = math.ceil(self.micro_batches_per_epoch / cfg.grad_accum_steps)
        # --max-steps: a fixed compute budget (data cycled in reshuffled epochs), else whole epochs
        self.total_steps = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        # --halt-step: training ends here, the schedule above stays that of the whole run
        self.last_step = min(self.total_steps, cfg.halt_step or self.total_steps)
        self.num_keep = num_to_keep(sum(p.numel() for p in self.params.values()), cfg.density)
        self.result = TrainRecord(total_params=sum(p.numel() for p in loaded.model.parameters()),
                                  precision=self.precision)
        # sparse methods: the engine chooses, refreshes and installs the masks (sparse/engine.py)
        self.engine = None
        if self.method.sparse:
            sums = cfg.rank_by == "sum" and not self.padded  # summed token losses: the gate divides by tokens
            self.engine = SparseEngine(
                self.params, SparseConfig(method=self.method.sparse_method, **{
                    f.name: getattr(cfg, f.name) for f in fields(SparseConfig) if f.name != "method"}),
                sample_loss=lambda i: self.batch_loss([i])[0],
                batch_losses=lambda ids: self.batch_loss(ids, cfg.rank_by),
                num_samples=len(pairs), model=loaded.model, costs=[e.cost for e in self.encoded],
                batch_size=cfg.batch_size, batches_per_epoch=self.micro_batches_per_epoch,
                tokens=[e.target_tokens for e in self.encoded] if sums else None, total_steps=self.total_steps,
                dist=dist)
        # lisa: whole layers take turns (training/layers.py)
        self.turns = self.method.layers(loaded.model, cfg) if self.method.layers else None
        self.checkpoint, self.curve, self.log = checkpoint, curve, log

    @property
    def mask(self) -> SparseMask | None:
        return self.engine.mask if self.engine else None

    @property
    def touched(self) -> dict[str, torch.Tensor]:
        """Every entry any mask has held: all a sparse fine-tune can have changed (a delta checkpoint)."""
        return self.engine.touched if self.engine else {}

    # -- losses -------------------------------------------------------------
    def batch_loss(self, ids: list[int], reduce: str = "mean") -> torch.Tensor:
        """Per-sample loss: the mean over its target tokens, or their sum (``reduce="sum"``)."""
        batch = pad_batch(self.loaded, [self.encoded[i] for i in ids])
        if self.padded:  # the mean over all --max-length positions; "sum" ranks in the same order
            batch = pad_labels_to(self.loaded, batch, self.cfg.max_length)
        with amp.autocast(self.precision, self.device):
            if reduce == "sum" and not self.padded:
                return token_losses(self.loaded, batch)[0]
            return per_sample_loss(self.loaded, batch)

    # -- masks (sparse/engine.py) ---------------------------------------------
    def compute_mask(self, step: int) -> SparseMask:
        """The method's mask for the steps from ``step`` on, with a record of it."""
        mask, info = self.engine.choose(step)
        self.result.refresh_seconds = round(self.result.refresh_seconds + info["seconds"], 3)
        self.result.refreshes.append(info)
        return mask

    def _sum_gradients(self, optimizer: torch.optim.Optimizer, gathered: bool) -> None:
        """Add up the processes' gradients: the gathered masked entries only, or dense gradients."""
        if not self.dist.active:
            return
        if gathered:
            optimizer.sum_gathered(self.dist.sum_)
            return
        for p in self.params.values():
            if p.requires_grad:
                if p.grad is None:  # this process had no sample in the step
                    p.grad = torch.zeros_like(p)
                self.dist.sum_(p.grad)

    def _install(self, mask: SparseMask, optimizer: torch.optim.Optimizer) -> None:
        self.engine.install(mask, optimizer)
        self.result.touched_entries = self.engine.touched_entries

    # -- loop ---------------------------------------------------------------
    def train(self) -> TrainRecord:
        """Train to the last step or the early stop. With a checkpoint, a SIGINT or SIGTERM stops the
        run after the step in progress, its state saved (checkpoint.py), as an interrupt does."""
        if self.checkpoint is None:
            return self._train()
        with self.checkpoint.stop_on_signal():
            result = self._train()
        if self.checkpoint.stop_signal is not None:  # asked after the last save: that state continues
            raise KeyboardInterrupt
        return result

    def _train(self) -> TrainRecord:
        cfg, model = self.cfg, self.loaded.model
        torch.manual_seed(cfg.seed)
        started = time.perf_counter()
        optimizer = build_optimizer(cfg, self.params)
        scaler = amp.grad_scaler(self.precision, self.device)
        # sparse optimizers gather the masked gradient entries during backward (one dense gradient
        # alive at a time); loss scaling (fp16) needs the dense gradients to unscale them
        gathered = self.method.sparse and scaler is None and self.gather_grads and not self.engine.method.regrows
        gather = optimizer.gathering if gathered else nullcontext
        warmup = round(cfg.warmup_ratio * self.total_steps)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, self.total_steps)
        shuffler = torch.Generator().manual_seed(cfg.seed)
        saved = self.checkpoint.load(self.log) if self.checkpoint else None
        if saved is not None:  # continue a stopped run exactly where it was
            where = self.restore(saved, optimizer, scheduler, shuffler, scaler)
            self.result.seconds_before_resume = saved["result"]["seconds"]
            started -= self.result.seconds_before_resume
            self.result.resumed_at.append(where["step"])
            if self.turns:  # the layers of the last turn (drawn from the step it began at)
                self.turns.choose(where["step"] - where["step"] % cfg.refresh_steps)
            self.log(f"continuing from the training checkpoint at step {where['step']} of {self.total_steps}")
        else:
            if self.method.sparse:
                self._install(self.compute_mask(step=0), optimizer)
            if self.turns:
                self.result.refreshes.append(self.turns.choose(0))
            where = {"step": 0, "epoch": 0, "group": 0, "below": 0, "epoch_rng": shuffler.get_state()}
        self.result.machines.append(amp.machine(self.device))
        self.result.trainable_params = self.num_keep if self.mask else sum(  # lisa: its turn's layers
            p.numel() for p in self.params.values() if p.requires_grad)

        model.train()
        step, below = where["step"], where["below"]
        bar = tqdm(total=self.last_step, initial=step, desc=f"train {cfg.method}",
                   disable=not (self.progress and self.dist.main))
        for epoch in itertools.count(where["epoch"]):
            if step >= self.last_step or self.result.stopped_early:
                break
            first_group = where["group"] if epoch == where["epoch"] else 0
            if epoch == where["epoch"]:  # the resumed epoch: its order again, from the state at its start
                shuffler.set_state(where["epoch_rng"])
            epoch_rng = shuffler.get_state()
            order = torch.randperm(len(self.pairs), generator=shuffler).tolist()
            for g, group in enumerate(self.step_groups(order)):
                if g < first_group:
                    continue
                if step >= self.last_step:
                    break
                total = self._step(group, optimizer, scaler, gather, gathered)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                # 6 significant digits: a loss near --stop-loss's 1e-6 must not be recorded as 0
                self.result.losses.append({"step": step, "epoch": epoch, "loss": float(f"{total:.6g}"),
                                           "lr": scheduler.get_last_lr()[0],
                                           "seconds": round(self._step_seconds, 3)})
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3g}")
                below = below + 1 if cfg.stop_loss is not None and total < cfg.stop_loss else 0
                if below >= STOP_PATIENCE:
                    self.result.stopped_early = step
                if self.engine and self.engine.refresh_due(step, self.last_step) and not self.result.stopped_early:
                    self._install(self.compute_mask(step), optimizer)
                if self.turns and step % cfg.refresh_steps == 0 and step < self.last_step:
                    self.result.refreshes.append(self.turns.choose(step))
                # a curve point every N steps, and one where an early stop ends training off that grid
                if self.curve and (step % self.curve.every == 0 or self.result.stopped_early):
                    self._curve_point(step, epoch, total)
                if self.checkpoint and (self.checkpoint.due() or step == self.last_step
                                        or self.result.stopped_early):
                    self.result.seconds = round(time.perf_counter() - started, 3)
                    here = {"step": step, "epoch": epoch, "group": g + 1, "below": below, "epoch_rng": epoch_rng}
                    self.checkpoint.save(self.state(here, optimizer, scheduler, scaler))
                    if self.checkpoint.stop_signal is not None:
                        self.log(f"\nstopped after step {step} ({signal.Signals(self.checkpoint.stop_signal).name}): "
                                 f"its training state is saved in {self.checkpoint.path}; the same command "
                                 "continues from it")
                        raise KeyboardInterrupt
                if self.result.stopped_early:
                    break
        bar.close()
        if hasattr(optimizer, "num_state_bytes"):
            self.result.optimizer_state_bytes = optimizer.num_state_bytes()
        else:
            self.result.optimizer_state_bytes = sum(
                t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
        if hasattr(optimizer, "remove_hooks"):
            optimizer.remove_hooks()
        for p in self.params.values():  # leave the model as we found it
            p.requires_grad_(True)
        self.result.steps = step
        self.result.seconds = round(time.perf_counter() - started, 3)
        return self.result

    def step_groups(self, order: list[int]) -> list[list[list[int]]]:
        """An epoch's sample order cut into optimizer steps, each a list of micro-batches."""
        size, accum = self.global_batch, self.cfg.grad_accum_steps
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        groups = [batches[i : i + accum] for i in range(0, len(batches), accum)]
        return [self.by_length(g) for g in groups] if self.cfg.group_by_length else groups

    def by_length(self, group: list[list[int]]) -> list[list[int]]:
        """``group``'s samples re-cut, shortest first, into micro-batches of the same sizes
        (--group-by-length): the step sees the same samples with less padding."""
        ids = sorted((i for batch in group for i in batch), key=lambda i: (self.encoded[i].cost, i))
        ends = list(itertools.accumulate(len(batch) for batch in group))
        return [ids[end - len(batch) : end] for batch, end in zip(group, ends)]

    def _step(self, group: list[list[int]], optimizer, scaler, gather, gathered: bool) -> float:
        """One optimizer step over the micro-batches of ``group``; returns the step's loss."""
        cfg = self.cfg
        n_samples = sum(len(b) for b in group)
        step_started = time.perf_counter()
        total = 0.0
        for ids in group:  # loss = mean over samples of the optimizer step
            mine = self.dist.share(ids)
            if not mine:  # more processes than samples left in this micro-batch
                continue
            loss = self.batch_loss(mine).sum() / n_samples
            with gather():
                (scaler.scale(loss) if scaler else loss).backward()
            total += float(loss.detach())
            self.result.train_tokens += sum(len(self.encoded[i].input_ids) for i in mine)
            self.result.padded_tokens += padded_positions([self.encoded[i] for i in mine])
        self._sum_gradients(optimizer, gathered)
        if self.dist.active:
            total = float(self.dist.sum_(torch.tensor([total], dtype=torch.float64)))
        if scaler:
            scaler.unscale_(optimizer)
        if self.engine:
            self.engine.observe()  # methods that regrow sum every entry's gradient between refreshes
        if not self.method.sparse and cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params.values(), cfg.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self._step_seconds = time.perf_counter() - step_started
        return total

    def _curve_point(self, step: int, epoch: int, loss: float) -> None:
        """Score the model now (eval mode, the RNG untouched, so training goes on as without it)."""
        model, rng, started = self.loaded.model, torch.get_rng_state(), time.perf_counter()
        point = {"step": step, "epoch": epoch + 1, "train_loss": float(f"{loss:.6g}")}  # near 1e-6 too
        model.eval()
        try:
            with torch.no_grad():
                point["metrics"] = self.curve.evaluate()
        except Exception as exc:  # a failed curve point never loses the run
            point["error"] = f"{type(exc).__name__}: {exc}"
            self.log(f"warning: curve point at step {step} failed ({point['error']})")
        finally:
            model.train()
            torch.set_rng_state(rng)
        point["seconds"] = round(time.perf_counter() - started, 3)
        self.result.curve.append(point)

    # -- checkpoints (checkpoint.py) ------------------------------------------
    def _optimizer_state(self, optimizer) -> dict:
        """Optimizer state by parameter name (torch's ``load_state_dict`` casts every floating
        parameter's state tensors to the parameter's dtype, the sparse optimizers' indices included)."""
        names = {p: n for n, p in self.params.items()}
        return {"state": {names[p]: dict(s) for p, s in optimizer.state.items() if s},
                "lr": [g["lr"] for g in optimizer.param_groups]}

    def state(self, where: dict, optimizer, scheduler, scaler) -> dict:
        """Everything needed to continue training exactly from here (checkpoint.py)."""
        if self.method.sparse:  # only touched entries can differ from the base model
            weights = {n: self.params[n].detach().reshape(-1)[idx].clone() for n, idx in self.touched.items()}
        else:
            weights = {n: p.detach().clone() for n, p in self.params.items()}
        return {"where": where, "weights": weights, "optimizer": self._optimizer_state(optimizer),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "mask": dict(self.mask.indices) if self.mask else None, "touched": dict(self.touched),
                "engine": self.engine.state_dict() if self.engine else None,  # the gate's ranking, spiel's sums
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "result": vars(self.result)}

    @torch.no_grad()
    def restore(self, saved: dict, optimizer, scheduler, shuffler, scaler) -> dict:
        """Put a saved state back (the model must be the one the run started from)."""
        if saved["mask"] is not None:
            self._install(SparseMask({n: t.to(self.device) for n, t in saved["mask"].items()}), optimizer)
        if self.engine:
            self.engine.touched = {n: t.to(self.device) for n, t in saved["touched"].items()}
            # (checkpoints from before the engine's state: the gate's ranking alone, or nothing)
            self.engine.load_state_dict(saved.get("engine") or {"ranking": saved.get("ranking")})
        for name, values in saved["weights"].items():
            p = self.params[name]
            if self.method.sparse:
                p.view(-1)[self.touched[name]] = values.to(p.device, p.dtype)
            else:
                p.copy_(values)
        for name, state in saved["optimizer"]["state"].items():
            p = self.params[name]
            optimizer.state[p] = {k: v.to(p.device) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        for group, lr in zip(optimizer.param_groups, saved["optimizer"]["lr"]):
            group["lr"] = lr
        scheduler.load_state_dict(saved["scheduler"])
        if scaler and saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        self.result = TrainRecord(**saved["result"])
        torch.set_rng_state(saved["rng"])
        if saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return saved["where"]

