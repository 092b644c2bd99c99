"""Meta-training: one fine-tuning stage on other relations before few-shot episodes.

TANL and the FISH-DIP scripts first train on FewRel's 64 training relations, then run the N-way
K-shot episodes on the 16 validation relations, each episode starting from that model. Here the
stage is full fine-tuning (lr 1e-4) on ``--meta-train-size`` instances; the model is saved once
in the run folder (``meta-model/``) and reused by every method and episode of the run, and by a
rerun with the same meta-training options.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.models.encoding import budget_from_pairs
from fishdip.models.loading import load_model, read_fishdip_metadata, save_model
from fishdip.runs.config import ExperimentConfig
from fishdip.training.config import TrainConfig
from fishdip.training.distributed import SINGLE, Dist, pick_device
from fishdip.training.trainer import Trainer

META_LR = 1e-4


def meta_options(cfg: ExperimentConfig) -> dict:
    """What determines the meta-trained model: a saved one is reused only if these match."""
    return {"base_model": cfg.model, "task": cfg.task, "meta_train": cfg.meta_train,
            "meta_train_size": cfg.meta_train_size, "meta_train_epochs": cfg.meta_train_epochs,
            "batch_size": cfg.train.batch_size, "max_length": cfg.train.max_length, "lr": META_LR}


def meta_trained_model(cfg: ExperimentConfig, task, folder: Path, log=print, progress: bool = True,
                       dist: Dist = SINGLE) -> str:
    """Path of the model meta-trained for ``cfg`` (trained now, or found in ``folder``); with several
    processes all train their share and the main one saves."""
    options = meta_options(cfg)
    meta = read_fishdip_metadata(str(folder))
    if meta is not None and meta.get("meta_train") == options:
        log(f"meta-training: reusing {folder}")
        return str(folder)
    pairs = task.meta_pairs(cfg)
    log(f"meta-training on {len(pairs)} instances of other relations ({cfg.meta_train}), full fine-tuning")
    loaded = load_model(cfg.model)
    loaded.model.to(pick_device(cfg.device, dist))
    settings = TrainConfig(method="full", epochs=cfg.meta_train_epochs, batch_size=cfg.train.batch_size, lr=META_LR,
                           max_length=cfg.train.max_length, seed=0)
    result = Trainer(loaded, pairs, settings, progress=progress and dist.main, dist=dist).train()
    loaded.budget = budget_from_pairs(loaded, pairs)
    if dist.main:
        save_model(loaded, folder, {**task.metadata(), "meta_train": options,
                                    "meta_train_loss": result.losses[-1]["loss"] if result.losses else None})
    dist.barrier()  # the other processes load it next
    return str(folder)
