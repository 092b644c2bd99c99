"""The run-folder contract: a folder records what produced it, and a rerun never mixes runs.

Starting a run in a folder that holds
- nothing (or no run)           -> start;
- the same run, unfinished      -> resume: finished episodes are kept, only the missing ones run;
- the same run, finished        -> nothing to do (``--overwrite`` runs it again);
- a different run               -> refused, naming the options that differ (``--overwrite`` removes
                                   the old run's files first).
"The same run" means the same options that affect results (everything but where outputs go and
whether models are saved), the same data (by checksum, wherever it lies) and the same fishdip
version.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fishdip.errors import FishdipError
from fishdip.io import read_json, read_jsonl
from fishdip.runs.config import OLDER_VALUES, RENAMED
from fishdip.training.config import RECIPE_SETTINGS
from fishdip.version import __version__

# options that say where outputs go, what is kept or how fast, not what is computed (a sentence's
# generation budget and tokens are its own whatever batch it shares: benchmarks/generation.py)
NOT_IDENTITY = ("output_dir", "save", "save_model", "data_dir", "checkpoint_every", "eval_batch_size")
# every file and folder a run writes (removed by --overwrite)
RUN_FILES = ("config.json", "results.json", "predictions.jsonl", "model", "models", "meta-model", "checkpoint",
             "comparison.md", "comparison.json", "losses.png")


# files of a saved model folder (models/episode-<i>, or any transformers model folder)
MODEL_FILES = ("fishdip.json", "model.safetensors", "pytorch_model.bin", "delta.safetensors", "adapter_config.json")


class RunConflict(FishdipError):
    """The folder holds a different run."""


def identity(config: dict) -> dict:
    """The part of a run's config.json that decides its results. Settings a recipe fixes count with
    the recipe's values (config.json records those; runs recorded before it did have the option
    defaults there that the recipe replaced when they ran)."""
    options = {k: v for k, v in config.items() if k not in NOT_IDENTITY and k not in ("data_files", "episodes")}
    train = options.get("train")
    if isinstance(train, dict):
        options["train"] = {**train, **RECIPE_SETTINGS.get(train.get("recipe"), {})}
    data = {Path(path).name: digest for path, digest in config.get("data_files", {}).items()}
    return {**options, "data_files": data}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and key != "data_files":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _renamed(flat: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in flat.items()}


def differences(old: dict, new: dict) -> list[str]:
    """Options whose values differ between two configs, as ``name: old -> new``."""
    a, b = (_renamed(_flatten(identity(c))) for c in (old, new))
    out = []
    for key in sorted(set(a) | set(b)):
        # an option a recorded run lacks counts with the value it had in effect (options.older_value)
        was, now = a.get(key, OLDER_VALUES.get(key)), b.get(key, OLDER_VALUES.get(key))
        if was != now:
            name = key.removeprefix("train.").replace("_", "-")
            if key == "data_files":
                out.append("data files (checksums differ)")
            elif key != "train.effective_lr" or "train.lr" not in a:
                out.append(f"{name}: {was!r} -> {now!r}")
    return out


@dataclass
class RunState:
    """What a run folder already holds for the run about to start."""

    finished: list[dict] = field(default_factory=list)  # results.json episodes already done
    rows: list[dict] = field(default_factory=list)  # their predictions.jsonl rows
    complete: bool = False


def remove_run(folder: Path) -> None:
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    clean_leftovers(folder)


def clean_leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of a killed run (atomic writes that never finished)."""
    removed = []
    for parent in (folder, folder / "models"):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.name.startswith(".") and (path.name.endswith(".tmp") or path.is_dir()
                                              or path.name.endswith(".tmp.png")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path.name)
    return removed


def refuse_foreign(folder: Path, overwrite: bool = False) -> None:
    """Refuse a folder fishdip may not write a run into: a file, a saved model, or run files that no
    config.json explains (written by something else, or by hand). Checked before anything, even the
    lock file, is created in it."""
    if folder.exists() and not folder.is_dir():
        raise FishdipError(f"--output-dir {folder}: exists and is not a folder")
    if any((folder / name).is_file() for name in MODEL_FILES):  # writing a run here would replace its files
        raise RunConflict(f"--output-dir {folder} is a saved model folder; choose another folder for the run")
    if overwrite:  # its run files will be replaced
        return
    config = folder / "config.json"
    if config.is_file():
        if not isinstance(read_json(config), dict):
            raise RunConflict(f"{config}: not a fishdip run config (a JSON object); choose another folder or "
                              "pass --overwrite to replace it")
        return
    foreign = [name for name in ("results.json", "predictions.jsonl", "comparison.md") if (folder / name).exists()]
    if (folder / "models").is_dir() and any(not p.name.startswith(".") for p in (folder / "models").iterdir()):
        foreign.append("models")  # (a killed save leaves only a temporary .folder, removed on start)
    if foreign:  # never replaced without a word
        raise RunConflict(f"--output-dir {folder} holds {', '.join(foreign)} but no config.json: not a fishdip "
                          "run folder; choose another folder or pass --overwrite to replace them")


def check_run_folder(folder: Path, config: dict, overwrite: bool = False) -> RunState:
    """Decide what to do with ``folder`` for a run described by ``config`` (its config.json)."""
    refuse_foreign(folder, overwrite)
    old_config_path = folder / "config.json"
    if overwrite or not old_config_path.is_file():
        if overwrite:
            remove_run(folder)
        return RunState()
    old = read_json(old_config_path)
    changed = differences(old, config)
    if old.get("fishdip_version") != __version__:
        changed.insert(0, f"fishdip version: {old.get('fishdip_version')!r} -> {__version__!r}")
    if changed:
        raise RunConflict(f"--output-dir {folder} holds a different run ({'; '.join(changed)}): "
                          f"choose another folder or pass --overwrite to replace it")
    results_path = folder / "results.json"
    if not results_path.is_file():
        return RunState()
    results = read_json(results_path)
    wanted = list(config["episodes"])
    finished = [e for e in results.get("episodes", []) if e.get("episode") in wanted]
    done = {e["episode"] for e in finished}
    predictions = folder / "predictions.jsonl"
    rows = [r for r in read_jsonl(predictions) if r.get("episode") in done] if predictions.is_file() else []
    return RunState(finished, rows, complete=done >= set(wanted))


LOCK_FILE = ".fishdip.lock"


@contextmanager
def one_writer(folder: Path):
    """Hold the run folder for this process: a second fishdip process starting into it is refused.
    The lock is the operating system's (flock), so a killed run leaves no stale lock behind."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise RunConflict(f"--output-dir {folder} is in use by another fishdip process (pid {holder}); "
                              "wait for it or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_layout(out: Path, methods: list[str], overwrite: bool) -> None:
    """One method writes its run into ``out``; several write one run each into ``out/<method>``."""
    single_here = (out / "config.json").is_file()
    subruns = sorted(p.parent.name for p in out.glob("*/config.json") if p.parent.name != "meta-model")
    if len(methods) > 1 and single_here or len(methods) == 1 and subruns:
        if not overwrite:
            held = "a single-method run" if single_here else f"runs of {', '.join(subruns)}"
            raise FishdipError(f"--output-dir {out} holds {held}: choose another folder or pass --overwrite")
        remove_run(out)
        for name in subruns:
            remove_run(out / name)


def model_folder(path: Path, episode: int | None = None, method: str | None = None) -> Path:
    """The saved model a path points at: a model folder itself (``models/episode-<i>``), or a run
    folder (``episode``, default the first; ``method`` for a comparison's ``<method>/``)."""
    path = Path(path)
    if (path / "fishdip.json").is_file():
        return path
    if method and not (path / method).is_dir():
        held = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file()) if path.is_dir() else []
        raise FishdipError(f"{path}: no run of method {method} here" + (f" (runs: {', '.join(held)})" if held else ""))
    runs = [path / method] if method else [path, *sorted(p for p in path.iterdir() if p.is_dir())] \
        if path.is_dir() else []
    for run in runs:
        found = {int(f.parent.name.split("-")[1]): f.parent for f in run.glob("models/episode-*/fishdip.json")}
        if found:
            if episode is None:
                return found[min(found)]
            if episode in found:
                return found[episode]
            raise FishdipError(f"{run}: no saved model of episode {episode} (saved: {sorted(found)})")
    raise FishdipError(f"{path}: no trained fishdip model here (fishdip.json, or models/episode-*/)")
