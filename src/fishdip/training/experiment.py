"""One experiment: for each episode, sample a subset, train a fresh model, evaluate, save.

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
from fishdip.data.datasets import get_spec, load_split
from fishdip.data.fetch import sha256
from fishdip.data.sampling import sample_indices
from fishdip.evaluation.metrics import aggregate
from fishdip.evaluation.predict import predict
from fishdip.io import write_json_atomic, write_jsonl_atomic
from fishdip.models.loading import load_model, save_model
from fishdip.models.text2text import PROMPT
from fishdip.tasks import load_task
from fishdip.training.config import ExperimentConfig
from fishdip.training.trainer import train


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _data_files(cfg: ExperimentConfig) -> dict[str, str]:
    """Checksums of the data files used, so a rerun can tell it reads the same data."""
    from fishdip.data.datasets import dataset_dir

    spec = get_spec(cfg.task)
    folder = dataset_dir(spec, cfg.data_dir)
    names = [spec.types_file, spec.file_name("train", cfg.fold), spec.file_name(cfg.eval_split, cfg.fold)]
    return {str(folder / n): sha256(folder / n) for n in names}


def run_experiment(cfg: ExperimentConfig, progress: bool = True, log=print) -> dict:
    cfg.train.validate()
    out = Path(cfg.output_dir)
    task = load_task(cfg.task, cfg.data_dir)
    train_all, _ = load_split(cfg.task, "train", cfg.data_dir, cfg.fold)
    eval_examples, _ = load_split(cfg.task, cfg.eval_split, cfg.data_dir, cfg.fold)
    if cfg.eval_limit is not None:
        eval_examples = eval_examples[: cfg.eval_limit]
    device = pick_device(cfg.device)
    write_json_atomic(out / "config.json", {"fishdip_version": __version__, **cfg.to_dict(),
                                            "data_files": _data_files(cfg)})

    episodes: list[dict] = []
    prediction_rows: list[dict] = []
    for episode in cfg.episodes:
        started = time.perf_counter()
        indices = sample_indices(len(train_all), episode, fraction=cfg.train_fraction, size=cfg.train_size)
        subset = [train_all[i] for i in indices]
        log(f"[{cfg.train.method}] episode {episode}: {len(subset)} training / "
            f"{len(eval_examples)} {cfg.eval_split} sentences on {device}")
        loaded = load_model(cfg.model)
        loaded.model.to(device)
        pairs = [(task.source(ex), task.target(ex)) for ex in subset]
        # the episode number seeds shuffling and random masks too: every method sees the same stream
        result = train(loaded, pairs, replace(cfg.train, seed=episode), progress=progress)
        texts, decoded = predict(loaded, task, eval_examples, cfg.eval_batch_size, cfg.train.max_length,
                                 cfg.num_beams, progress=progress)
        metrics = task.score(eval_examples, decoded)
        for ex, text, pred in zip(eval_examples, texts, decoded):
            prediction_rows.append({
                "episode": episode, "id": ex.id, "input": task.source(ex), "generated": text,
                "predicted": task.to_json(ex.tokens, pred.entities, pred.relations),
                "gold": task.to_json(ex.tokens, ex.entities, ex.relations),
                "errors": dict(pred.errors),
            })
        if cfg.save_model:
            folder = out / "model" if len(cfg.episodes) == 1 else out / "models" / f"episode-{episode}"
            save_model(loaded, folder, {**task.metadata(), "prompt": PROMPT,
                                        "max_length": cfg.train.max_length, "base_model": cfg.model})
        episodes.append({
            "episode": episode, "train_indices": indices, "metrics": metrics,
            "train": {k: v for k, v in vars(result).items()},
            "seconds": round(time.perf_counter() - started, 1),
        })
        results = {
            "task": cfg.task, "method": cfg.train.method, "model": cfg.model,
            "complete": len(episodes) == len(cfg.episodes),
            "episodes": episodes,
            "aggregate": aggregate([e["metrics"] for e in episodes]),
        }
        # rewritten after every episode: an interrupted run keeps what it finished, never half a file
        write_jsonl_atomic(out / "predictions.jsonl", prediction_rows)
        write_json_atomic(out / "results.json", results)
        del loaded
    return results
