"""One experiment: for each episode, take its training subset, train a fresh model, evaluate, save.

Files in ``output_dir``:
  config.json         everything needed to rerun, and what identifies the run (rundir.py)
  results.json        per-episode metrics + "aggregate" mean/std (rewritten after each episode)
  predictions.jsonl   input, generated text, parsed structures and gold, per episode
  models/episode-<i>/ the trained model of each episode (written after its metrics): a delta on the
                      base model for sparse methods (``--save delta``, models/delta.py), else a full model
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path

from fishdip.data.annotations import FILE_TASK, FileDataset
from fishdip.data.datasets import DATASETS
from fishdip.data.fetch import sha256
from fishdip.errors import FishdipError
from fishdip.evaluation.icl import Demonstrations
from fishdip.evaluation.journal import Journal
from fishdip.evaluation.metrics import aggregate
from fishdip.io import write_json_atomic, write_jsonl_atomic
from fishdip.models.delta import weights_checksum
from fishdip.models.encoding import PROMPT, budget_from_pairs
from fishdip.models.loading import load_model, save_adapter_model, save_delta_model, save_model
from fishdip.options import ConfigError
from fishdip.runs.config import ExperimentConfig, check_environment, method_config, refuse_unused, task_class
from fishdip.runs.meta import meta_trained_model
from fishdip.runs.rundir import (
    check_layout,
    check_run_folder,
    clean_leftovers,
    differences,
    identity,
    one_writer,
    refuse_foreign,
)
from fishdip.tasks import Task, load_task, task_of
from fishdip.training import precision as amp
from fishdip.training.checkpoint import Checkpoint, checkpoint_path
from fishdip.training.config import TrainConfig
from fishdip.training.distributed import SINGLE, Dist, pick_device
from fishdip.training.trainer import Curve, Trainer, TrainRecord
from fishdip.version import __version__


def _data_files(cfg: ExperimentConfig, task: Task, data: dict) -> dict[str, str]:
    """Checksums of the data files used, so a rerun can tell it reads the same data (for examples
    held in memory: a checksum of the examples)."""
    if task.corpus is None:
        blob = json.dumps([[repr(x) for x in (train, evaluation)] for train, evaluation, _ in data.values()])
        return {f"{task.dataset}.examples": hashlib.sha256(blob.encode()).hexdigest()}
    return {str(path): sha256(path) for path in task.corpus.files(task.splits_read(cfg))}


def task_for(cfg: ExperimentConfig) -> Task:
    """The task of a run's config, its data resolved once (every method and episode reads it)."""
    if cfg.task == FILE_TASK:
        return task_of(FileDataset(Path(cfg.train_file), cfg.eval_file and Path(cfg.eval_file), cfg.data_format,
                                   cfg.dev_fraction, cfg.split_seed, cfg.types_file and Path(cfg.types_file)),
                       cfg.decoder)
    return load_task(cfg.task, cfg.data_dir, cfg.decoder, cfg.fold, cfg.strict_tags)


def episode_train_config(cfg: ExperimentConfig, episode: int) -> TrainConfig:
    """One episode's training settings: the episode number (plus --seed) seeds shuffling, dropout, random
    masks and in-context demonstrations, so every method of a grid sees the same stream on an episode;
    the training subset depends on the episode only."""
    return replace(cfg.train, seed=cfg.train.seed + episode)


def episode_pairs(cfg: ExperimentConfig, episode: int) -> list[tuple[str, str]]:
    """One episode's training pairs, as the runner trains on them: for scripts and benchmarks that look
    at a grid cell without running it."""
    task = task_for(cfg)
    train_examples, _, _ = task.episode_data(episode, cfg)
    return task.pairs(train_examples)


def _results(cfg: ExperimentConfig, episodes: list[dict]) -> dict:
    order = {e: i for i, e in enumerate(cfg.episodes)}
    episodes = sorted(episodes, key=lambda e: order.get(e["episode"], len(order)))
    return {"task": cfg.task, "method": cfg.train.method, "model": cfg.model,
            "complete": {e["episode"] for e in episodes} >= set(cfg.episodes),
            "episodes": episodes, "aggregate": aggregate([e["metrics"] for e in episodes]) if episodes else {}}


def run_experiment(cfg: ExperimentConfig, progress: bool = True, log=print, meta_dir: Path | None = None,
                   overwrite: bool = False, task: Task | None = None, fresh_model=None,
                   dist: Dist = SINGLE) -> dict:
    """Run every episode of ``cfg`` not already finished in ``cfg.output_dir`` (``_run_experiment``):
    the folders, files and devices it names checked first (its values checked themselves when it was
    made), the run folder held by this process alone while it runs (rundir.one_writer)."""
    check_environment(cfg, model_path=fresh_model is None)
    return _run_held(cfg, progress, log, meta_dir, overwrite, task, fresh_model, dist)


def _run_held(cfg: ExperimentConfig, progress: bool, log, meta_dir: Path | None, overwrite: bool,
              task: Task | None, fresh_model, dist: Dist) -> dict:
    with ExitStack() as held:
        return _run_experiment(cfg, progress, log, meta_dir, overwrite, task, fresh_model, dist,
                               hold=lambda out: held.enter_context(one_writer(out)))


def _run_experiment(cfg: ExperimentConfig, progress: bool, log, meta_dir: Path | None, overwrite: bool,
                    task: Task | None, fresh_model, dist: Dist, hold) -> dict:
    """Run every episode of ``cfg`` not already finished in ``cfg.output_dir`` (see rundir.py).

    ``meta_dir``: where the meta-trained model is kept (``--meta-train``; default
    ``<output_dir>/meta-model``; several methods share one). ``task``: a task object to use instead
    of ``cfg.task`` (in-memory examples); ``fresh_model``: a callable giving each episode its own
    copy of a model already in memory, instead of loading ``cfg.model``. ``dist``: this process's
    place among several (distributed.py): all train and evaluate a share, the main one writes."""
    log = log if dist.main else (lambda *_: None)
    out = Path(cfg.output_dir)
    task = task or task_for(cfg)
    # read every episode's data before writing anything: a bad file fails here, leaving no trace
    data = {episode: task.episode_data(episode, cfg) for episode in cfg.episodes}
    config = {"fishdip_version": __version__, **cfg.to_dict(), "data_files": _data_files(cfg, task, data)}
    # the main process decides what the folder holds (and may clean it); the others follow its answer
    state = error = None
    if dist.main:
        try:
            refuse_foreign(out, overwrite)  # before the lock file: a folder fishdip did not write is left as it was
            hold(out)
            state = check_run_folder(out, config, overwrite)
        except FishdipError as exc:
            error = exc
    state, error = dist.broadcast((state, error))
    if error is not None:
        raise error
    unsaved = sorted(e["episode"] for e in state.finished if e.get("model") is None and cfg.save_mode != "none"
                     and cfg.train.spec.trains)
    if unsaved:  # a kill during the save, or a full disk: the metrics are kept, the model is not there
        log(f"warning: {out}: episode(s) {_ranges(unsaved)} finished but their model was not saved (the run "
            "stopped while saving, or saving failed); their metrics are kept; --overwrite trains them again")
    if state.complete:
        log(f"{out}: this run is already finished (episodes {_ranges(cfg.episodes)}); nothing to do "
            f"(--overwrite runs it again)")
        return _results(cfg, state.finished)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        leftovers = clean_leftovers(out)
        if leftovers:
            log(f"{out}: removed {len(leftovers)} temporary file(s) of an interrupted run")
    done = {e["episode"] for e in state.finished}
    if done:
        log(f"{out}: resuming: episodes {_ranges(sorted(done))} are finished and kept; running "
            f"{_ranges([e for e in cfg.episodes if e not in done])}")
    if dist.main:
        write_json_atomic(out / "config.json", config)
    start_model = cfg.model
    if cfg.meta_train:
        start_model = meta_trained_model(cfg, task, meta_dir or out / "meta-model", log, progress, dist)
    device = pick_device(cfg.device, dist)
    save = cfg.save_mode
    if save in ("delta", "adapter") and fresh_model is not None:  # a model in memory has no name to load it by
        if cfg.save == save:
            raise ConfigError(f"save='{save}' needs a base model that can be loaded by name or path; "
                              "this one is held in memory (use save='full')")
        save = "full"
    base_checksum = None
    episodes, rows = list(state.finished), list(state.rows)
    order = {e: i for i, e in enumerate(cfg.episodes)}
    results = _results(cfg, episodes)
    for episode in cfg.episodes:
        if episode in done:
            continue
        started = time.perf_counter()
        train_examples, eval_examples, context = data[episode]
        log(f"[{cfg.train.method}] episode {episode}: {len(train_examples)} training / "
            f"{len(eval_examples)} evaluation examples on {device}"
            + (f" (x {dist.world} processes)" if dist.active else ""))
        loaded = fresh_model() if fresh_model is not None else load_model(start_model)
        if save in ("delta", "adapter") and base_checksum is None:  # every episode starts from the same base
            base_checksum = weights_checksum(loaded.model)
        loaded.model.to(device)
        pairs = task.pairs(train_examples)
        train = episode_train_config(cfg, episode)
        # a generation budget fixed by the training targets, the same for every batch composition
        loaded.budget = budget_from_pairs(loaded, pairs)
        checkpoint, demonstrations = None, None
        if cfg.train.spec.trains:
            if not dist.active:  # several processes: no training checkpoint (each would need its share)
                checkpoint = Checkpoint(checkpoint_path(out, episode), cfg.checkpoint_every,
                                        {**identity(config), "episode": episode},
                                        same_run=lambda saved, now: not differences(saved, now))
            trainer = Trainer(loaded, pairs, train,
                              progress=progress and dist.main,
                              dist=dist, checkpoint=checkpoint, curve=_curve(cfg, task, loaded, device, context),
                              log=log)
            result = trainer.train()
        else:  # in-context learning: the base model, with demonstrations drawn from the training subset
            demonstrations = Demonstrations(loaded, pairs, train.icl_context, train.icl_selection, seed=train.seed)
            result = TrainRecord(total_params=sum(p.numel() for p in loaded.model.parameters()),
                                 precision=amp.resolve(cfg.train.precision, device), machines=[amp.machine(device)])
        journal = None
        if not dist.active:  # a stop during evaluation keeps the batches written (evaluation/journal.py)
            journal = Journal.open(checkpoint_path(out, episode).with_suffix(".generations.jsonl"),
                                   {**identity(config), "episode": episode, "weights": weights_checksum(loaded.model)},
                                   log)
        with amp.autocast(result.precision, device):  # each process generates for its share
            texts, decoded = task.predict(loaded, dist.share(eval_examples), cfg.generation(), context,
                                          progress=progress and dist.main, demonstrations=demonstrations,
                                          journal=journal)
        if dist.active:
            shards = dist.gather((texts, decoded))
            texts, decoded = dist.unshard([t for t, _ in shards]), dist.unshard([d for _, d in shards])
            if not dist.main:
                del loaded
                continue
        # a continued episode's time counts its training before the stop too
        seconds = time.perf_counter() - started + result.seconds_before_resume
        record = {"episode": episode, **context, "metrics": task.score(eval_examples, decoded),
                  "train": vars(result), "seconds": round(seconds, 1), "model": None}
        rows += [{"episode": episode, **task.prediction_row(ex, text, pred)}
                 for ex, text, pred in zip(eval_examples, texts, decoded)]
        episodes.append(record)
        results = _results(cfg, episodes)
        # metrics and predictions first, atomically: a failure or kill after this keeps them
        write_jsonl_atomic(out / "predictions.jsonl", sorted(rows, key=lambda r: order.get(r["episode"], 0)))
        write_json_atomic(out / "results.json", results)
        if save != "none":
            folder = out / "models" / f"episode-{episode}"
            meta = {**task.metadata(), "prompt": PROMPT, "max_length": cfg.train.max_length, "base_model": start_model}
            try:
                if save == "delta":
                    save_delta_model(loaded, trainer.touched, folder, meta, base_checksum)
                elif save == "adapter":
                    save_adapter_model(loaded, folder, meta, base_checksum)
                else:
                    if hasattr(loaded.model, "merge_and_unload"):  # adapters, saved merged into the weights
                        loaded.model = loaded.model.merge_and_unload()
                    save_model(loaded, folder, meta)
                record["model"] = str(folder.relative_to(out))
                write_json_atomic(out / "results.json", results)
            except OSError as exc:
                log(f"warning: episode {episode}: the model could not be saved ({exc}); its metrics and "
                    f"predictions are kept in {out}")
        if journal is not None:  # the episode's results are written: nothing left to continue
            journal.remove()
        if checkpoint is not None:
            checkpoint.remove()
        del loaded
    return results


def _curve(cfg: ExperimentConfig, task: Task, loaded, device, context: dict) -> Curve | None:
    """``--eval-every``: the learning curve's scorer, on a fixed slice of ``--curve-split``."""
    if cfg.eval_every is None:
        return None
    examples = task.curve_examples(cfg)
    precision = amp.resolve(cfg.train.precision, device)

    def evaluate() -> dict:
        with amp.autocast(precision, device):
            _, decoded = task.predict(loaded, examples, cfg.generation(), context, progress=False)
        return task.score(examples, decoded)

    return Curve(cfg.eval_every, evaluate)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5" (ascending numbers; a run of consecutive ones is one range)."""
    runs = [[n for _, n in group] for _, group in groupby(enumerate(numbers), lambda x: x[1] - x[0])]
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


@dataclass
class Comparison:
    """Results of one run per method on the same episodes (what ``fishdip.train`` returns)."""

    runs: dict[str, dict]  # method -> the run's results.json content
    output_dir: Path
    table: str  # comparison.md

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """method -> metric -> mean over episodes."""
        return {m: {k: v["mean"] for k, v in r["aggregate"].items()} for m, r in self.runs.items()}

    def model_dir(self, method: str | None = None, episode: int | None = None) -> Path:
        """Folder of a saved model (default: the first method's first episode)."""
        method = method or next(iter(self.runs))
        run = self.runs[method]
        episode = episode if episode is not None else run["episodes"][0]["episode"]
        base = self.output_dir if len(self.runs) == 1 else self.output_dir / method
        return base / "models" / f"episode-{episode}"


def run_comparison(cfg: ExperimentConfig, methods: list[str], overwrite: bool = False, progress: bool = True,
                   log=print, task: Task | None = None, fresh_model=None, dist: Dist = SINGLE) -> Comparison:
    """Run ``cfg`` once per method (one method: into ``output_dir``; several: ``output_dir/<method>``),
    each on the same subsets, then write comparison.md/json and losses.png."""
    from fishdip.reports.comparison import write_comparison

    configs = [method_config(cfg, m) for m in methods]  # made, so checked, before the first one starts
    if task is None and cfg.task in DATASETS:  # an option the task cannot use: before anything is read
        refuse_unused(cfg, methods, DATASETS[cfg.task].family, cfg.task)
    check_environment(cfg, model_path=fresh_model is None)  # once: every method's run names the same
    task = task or task_for(cfg)  # the data resolved once for every method
    refuse_unused(cfg, methods, task.family, task.dataset)
    out = Path(cfg.output_dir)
    error = None
    if dist.main:
        try:
            check_layout(out, methods, overwrite)
        except FishdipError as exc:
            error = exc
    error = dist.broadcast(error)
    if error is not None:
        raise error
    runs = {}
    for method, c in zip(methods, configs):
        sub = out if len(methods) == 1 else out / method
        runs[method] = _run_held(replace(c, output_dir=str(sub)), progress, log, out / "meta-model", overwrite,
                                 task, fresh_model, dist)
    table = ""
    if dist.main:  # the main process writes the comparison
        info = describe(cfg, type(task) if task is not None else task_class(cfg.task))
        if task is not None:
            info["task"] = task.dataset
        table = write_comparison(runs, out, info)
    dist.barrier()  # all processes leave together: one exiting early can abort another's gloo threads
    return Comparison(runs, out, table)


def describe(cfg: ExperimentConfig, task: type[Task]) -> dict:
    """What a comparison table's reader needs to know about the runs."""
    size = task.describe_training(cfg)
    evaluation = f"{cfg.eval_split} split" + (f", first {cfg.eval_limit}" if cfg.eval_limit else ", all of it")
    return {"task": cfg.task, "model": cfg.model, "training": size, "evaluation": evaluation,
            "episodes": cfg.episodes, "decoder": cfg.decoder, "precision": cfg.train.precision}
