"""FISH-DIP in a ``transformers.Trainer``: a callback that chooses and refreshes the mask, and the
sparse optimizer to hand the Trainer as ``optimizers=``.

    optimizer, callback = fish_dip(model, train_dataset, data_collator)   # SparseConfig() defaults
    trainer = Trainer(model, TrainingArguments(..., max_grad_norm=0), train_dataset=train_dataset,
                      data_collator=data_collator, optimizers=(optimizer, None), callbacks=[callback])
    trainer.train()
    callback.save_delta("my-delta", base_model="t5-base")    # loads with fishdip.load / fishdip export

Before the first step the callback ranks every training sample by the model's loss, scores Fisher
information on the most regressing ones and installs the top-k mask; after each optimizer step it
asks the engine (sparse/engine.py) whether the next step needs a new mask, at the step the FISH-DIP
reference installs it (``refresh_phase``). The optimizer keeps state for the masked entries only
and writes only them; gradient accumulation and accelerate / DDP run as the Trainer runs them (each
process ranks and scores the same samples on the same weights, so every process picks the same
mask). Clipping is the optimizer's (over the masked entries, as the reference clips its masked
gradients), so the Trainer's own must be off: ``max_grad_norm=0``. Works for causal LM, seq2seq
and sequence-classification models: a sample's loss is the model's own ``loss``; the ranking
takes one loss per sample from the logits (mean token cross-entropy over labels that are not
-100, or the classification cross-entropy).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback

from fishdip.models.delta import DELTA_FILE, weights_checksum
from fishdip.models.loading import write_folder_atomic
from fishdip.sparse.engine import SparseConfig, SparseEngine, sparse_optimizer
from fishdip.sparse.optimizers import SparseOptimizer

IGNORE = -100


def per_sample_losses(model: nn.Module, batch: dict) -> torch.Tensor:
    """One loss per sample of a collated batch: the mean token cross-entropy over its labels that
    are not -100 (causal LM: position t predicts token t+1), or, for a classification head, its
    cross-entropy."""
    labels = batch["labels"]
    logits = model(**batch).logits  # with the labels: a seq2seq model builds its decoder inputs from them
    if logits.dim() == 2:  # sequence classification: one prediction per sample
        return F.cross_entropy(logits.float(), labels, reduction="none")
    if not model.config.is_encoder_decoder:
        logits, labels = logits[:, :-1], labels[:, 1:]
    token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                            ignore_index=IGNORE, reduction="none").view(labels.shape)
    real = (labels != IGNORE).float()
    return (token * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)


class FishDipCallback(TrainerCallback):
    """Installs the engine's first mask before training and refreshes it on schedule."""

    def __init__(self, engine: SparseEngine, optimizer: SparseOptimizer, base_checksum: str):
        self.engine, self.optimizer, self.base_checksum = engine, optimizer, base_checksum
        self.refreshes: list[dict] = []  # one record per mask: step, samples, losses, timings

    def _refresh(self, step: int) -> None:
        mask, info = self.engine.choose(step)
        self.engine.install(mask, self.optimizer)
        self.refreshes.append(info)

    def on_train_begin(self, args, state, control, **kwargs):
        if args.max_grad_norm:
            raise ValueError("FISH-DIP clips gradients over the masked entries in its optimizer: pass "
                             "TrainingArguments(max_grad_norm=0) (and max_grad_norm= to fish_dip instead)")
        self.engine.total_steps = state.max_steps or None
        if self.engine.mask is None:
            self._refresh(state.global_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.engine.observe()  # spiel sums every entry's gradient between refreshes (others: nothing)

    def on_step_end(self, args, state, control, **kwargs):
        if self.engine.refresh_due(state.global_step, state.max_steps or None):
            self._refresh(state.global_step)

    def save_delta(self, folder: str | Path, base_model: str, metadata: dict | None = None) -> Path:
        """The fine-tune as a delta on ``base_model`` (a hub name or folder, as fishdip loads it):
        ``delta.safetensors`` with the touched entries and ``fishdip.json`` naming the base and the
        checksum of its weights (plus ``metadata``: a fishdip task's, for ``fishdip.load``)."""
        folder = Path(folder)
        model = self.engine.model

        def write(tmp: Path) -> None:
            entries = self.engine.save_delta(tmp / DELTA_FILE, model)
            meta = {**(metadata or {}), "base_model": base_model, "base_checksum": self.base_checksum,
                    "delta_entries": entries, "refreshes": len(self.refreshes)}
            (tmp / "fishdip.json").write_text(json.dumps(meta, indent=2) + "\n")

        write_folder_atomic(folder, write)
        return folder


def fish_dip(model: nn.Module, train_dataset, data_collator, config: SparseConfig | None = None, *,
             optimizer: str = "reference", lr: float = 1e-2, weight_decay: float = 0.0,
             max_grad_norm: float = 1.0, batch_size: int = 8) -> tuple[SparseOptimizer, FishDipCallback]:
    """The optimizer and callback that make a ``transformers.Trainer`` train ``model`` with FISH-DIP
    (or ``config.method``: fish, random, random-dip, sift, spiel). ``train_dataset`` and ``data_collator`` are the
    Trainer's: samples are ranked and scored one collated sample (or ``batch_size``) at a time.
    ``optimizer``: reference (the FISH-DIP reference's Adafactor, lr 1e-2), adamw or adafactor."""
    config = config or SparseConfig()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    device = next(model.parameters()).device

    def batch(ids: list[int]) -> dict:
        return {k: v.to(device) for k, v in data_collator([train_dataset[i] for i in ids]).items()}

    engine = SparseEngine(params, config, sample_loss=lambda i: model(**batch([i])).loss,
                          batch_losses=lambda ids: per_sample_losses(model, batch(ids)),
                          num_samples=len(train_dataset), model=model, batch_size=batch_size)
    sparse = sparse_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
    return sparse, FishDipCallback(engine, sparse, weights_checksum(model))
