"""Score a finished run's stored generations again, with another decoder.

Generation is the expensive part of evaluation; decoding is cheap. ``rescore_run`` reads a run
folder's ``config.json`` and ``predictions.jsonl``, rebuilds each episode's evaluation examples
from the same data, decodes every stored generation with the chosen decoder and scores it, so
the ``fishdip`` and ``tanl`` decoders can be compared on exactly the same model outputs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fishdip.data.fetch import sha256
from fishdip.errors import FishdipError
from fishdip.evaluation.metrics import aggregate
from fishdip.evaluation.predict import LIMIT_ERROR
from fishdip.io import read_json, read_jsonl
from fishdip.runs.config import ExperimentConfig
from fishdip.tasks import load_task


def run_folders(path: Path) -> list[Path]:
    """``path`` itself if it is a run folder, else its method subfolders (a multi-method run)."""
    def is_run(folder: Path) -> bool:
        return (folder / "config.json").is_file() and (folder / "predictions.jsonl").is_file()

    if is_run(path):
        return [path]
    found = sorted(p.parent for p in path.glob("*/config.json") if is_run(p.parent))
    if not found:
        raise FishdipError(f"{path}: no config.json and predictions.jsonl here or in a subfolder: "
                           f"not a fishdip run folder")
    return found


def _rows(path: Path) -> dict[int, list[dict]]:
    if not path.is_file():
        raise FishdipError(f"{path}: not found: the run has no stored generations")
    by_episode: dict[int, list[dict]] = {}
    for row in read_jsonl(path):
        if not isinstance(row.get("episode"), int) or "generated" not in row:
            raise FishdipError(f"{path}: a row without 'episode' and 'generated': not a prediction row")
        by_episode.setdefault(row["episode"], []).append(row)
    return by_episode


def _check_same_data(folder: Path, config: dict, files: list[Path]) -> None:
    """The data files found now must be the ones the run read (by checksum): stored generations
    scored against other gold annotations would give numbers that mean nothing."""
    recorded = {Path(path).name: digest for path, digest in config.get("data_files", {}).items()}
    for path in files:
        if path.name in recorded and sha256(path) != recorded[path.name]:
            raise FishdipError(f"{path}: not the file the run in {folder} read (its checksum differs from the one "
                               "in config.json); rescore against the data the run was made with (--data-dir)")


def rescore_run(folder: Path, decoder: str, data_dir: str | None = None) -> dict:
    """Per-episode metrics and their aggregate for one run folder, decoded with ``decoder``."""
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or "task" not in config:
        raise FishdipError(f"{folder / 'config.json'}: not a fishdip run config (an object with 'task')")
    cfg = ExperimentConfig.from_dict(config)
    if data_dir is not None:
        cfg.data_dir = data_dir
    task = load_task(cfg.task, cfg.data_dir, decoder, cfg.fold, cfg.strict_tags)
    if not task.decodes_text:
        raise FishdipError(f"{folder}: {cfg.task} is scored by candidate losses, not by decoding text")
    _check_same_data(folder, config, task.corpus.files(task.splits_read(cfg)))
    episodes = []
    stored = _rows(folder / "predictions.jsonl")
    if not stored:
        raise FishdipError(f"{folder / 'predictions.jsonl'}: no stored generations (an empty file)")
    for episode, rows in sorted(stored.items()):
        _, examples, _ = task.episode_data(episode, cfg)
        if [str(r["id"]) for r in rows] != [str(ex.id) for ex in examples]:
            raise FishdipError(f"{folder}: episode {episode}: the stored predictions do not match the "
                               f"evaluation examples of {cfg.task} (different data or options?)")
        decoded = []
        for row, ex in zip(rows, examples):
            pred = task.decode(row["generated"], ex)
            pred.errors = Counter(pred.errors)
            pred.errors[LIMIT_ERROR] += row.get("errors", {}).get(LIMIT_ERROR, 0)
            pred.errors = +pred.errors
            decoded.append(pred)
        episodes.append({"episode": episode, "metrics": task.score(examples, decoded)})
    return {"run": str(folder), "method": cfg.train.method, "decoder": decoder, "episodes": episodes,
            "aggregate": aggregate([e["metrics"] for e in episodes])}
