"""One experiment: for each episode, take its training subset, train a fresh model, evaluate, save.

Files in ``output_dir``:
  config.json         everything needed to rerun (written first)
  results.json        per-episode metrics + "aggregate" mean/std (rewritten after each episode)
  predictions.jsonl   input, generated text, parsed structures and gold, per episode
  model/              the trained model (models/episode-<i>/ with several episodes)
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from fishdip import __version__
from fishdip.data.datasets import data_files
from fishdip.data.fetch import sha256
from fishdip.evaluation.metrics import aggregate
from fishdip.io import write_json_atomic, write_jsonl_atomic
from fishdip.models.loading import load_model, save_model
from fishdip.models.text2text import PROMPT
from fishdip.tasks import load_task
from fishdip.training.config import ExperimentConfig
from fishdip.training.trainer import train


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _data_files(cfg: ExperimentConfig, family: str) -> dict[str, str]:
    """Checksums of the data files used, so a rerun can tell it reads the same data."""
    splits = [cfg.eval_split] if family == "fewshot_rc" else ["train", cfg.eval_split]
    return {str(path): sha256(path) for path in data_files(cfg.task, cfg.data_dir, splits, cfg.fold)}


def run_experiment(cfg: ExperimentConfig, progress: bool = True, log=print) -> dict:
    cfg.train.validate()
    out = Path(cfg.output_dir)
    task = load_task(cfg.task, cfg.data_dir)
    device = pick_device(cfg.device)
    write_json_atomic(out / "config.json", {"fishdip_version": __version__, **cfg.to_dict(),
                                            "data_files": _data_files(cfg, task.family)})
    episodes: list[dict] = []
    rows: list[dict] = []
    for episode in cfg.episodes:
        started = time.perf_counter()
        train_examples, eval_examples, context = task.episode_data(episode, cfg)
        log(f"[{cfg.train.method}] episode {episode}: {len(train_examples)} training / "
            f"{len(eval_examples)} evaluation examples on {device}")
        loaded = load_model(cfg.model)
        loaded.model.to(device)
        # the episode number seeds shuffling and random masks too: every method sees the same stream
        result = train(loaded, task.pairs(train_examples), replace(cfg.train, seed=episode), progress=progress)
        texts, decoded = task.predict(loaded, eval_examples, cfg, context, progress=progress)
        metrics = task.score(eval_examples, decoded)
        rows += [{"episode": episode, **task.prediction_row(ex, text, pred)}
                 for ex, text, pred in zip(eval_examples, texts, decoded)]
        if cfg.save_model:
            folder = out / "model" if len(cfg.episodes) == 1 else out / "models" / f"episode-{episode}"
            save_model(loaded, folder, {**task.metadata(), "prompt": PROMPT,
                                        "max_length": cfg.train.max_length, "base_model": cfg.model})
        episodes.append({"episode": episode, **context, "metrics": metrics, "train": vars(result),
                         "seconds": round(time.perf_counter() - started, 1)})
        results = {
            "task": cfg.task, "method": cfg.train.method, "model": cfg.model,
            "complete": len(episodes) == len(cfg.episodes),
            "episodes": episodes,
            "aggregate": aggregate([e["metrics"] for e in episodes]),
        }
        # rewritten after every episode: an interrupted run keeps what it finished, never half a file
        write_jsonl_atomic(out / "predictions.jsonl", rows)
        write_json_atomic(out / "results.json", results)
        del loaded
    return results
