"""A grid of runs: tasks x training sizes x methods x episodes, from one TOML file, resumable.

    output_dir = "runs/conll04-grid"      # relative to the current folder; --output-dir overrides
    tasks = ["conll04"]
    episodes = [1, 2, 3]
    methods = ["full", "fish-dip", "fish-dip-adamw", "lora"]
    metric = "relation_f1"                # what a sweep selects on (default: the first one reported)

    [options]                             # `fishdip train` options (field names) for every cell
    model = "embedded"
    save = "none"

    [[sizes]]                             # each size: train_size or train_fraction, plus any options
    train_size = 9
    max_steps = 30

    [method.fish-dip-adamw]               # a label of `methods` -> its options
    method = "fish-dip"                   # (a label that is a method name needs no table)
    recipe = "default"

    [method.lora]
    lr = [3e-4, 1e-3]                     # a list: swept on the dev split, the best value is used

    [sweep]                               # how values are chosen: never on the test split
    episodes = [1]
    eval_limit = 50

Every cell is one run folder, ``OUTPUT/<task>/<size>/<method>/episode-<i>/`` (rundir.py): a rerun
skips finished cells and starts unfinished ones again, cells run in a stable order (episode-major,
so a half-finished grid already holds paired comparisons), and ``--only`` picks a slice so a grid
can be spread over sessions or machines. A sweep's runs lie in ``<method>/sweep/<values>/`` and its
choice in ``<method>/sweep.json``.
"""

from __future__ import annotations

import fnmatch
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ImportError:  # Python 3.10: the same parser, packaged
    import tomli as tomllib

from fishdip.data.datasets import DATASETS
from fishdip.errors import FishdipError
from fishdip.io import read_json, write_json_atomic, write_text_atomic
from fishdip.options import ConfigError
from fishdip.runs.config import ExperimentConfig, configs_from_options, task_class, unused_options
from fishdip.runs.experiment import run_experiment
from fishdip.runs.rundir import differences
from fishdip.training.checkpoint import checkpoint_path, saved_progress
from fishdip.training.methods import METHODS

GRID_KEYS = {"output_dir", "tasks", "episodes", "methods", "metric", "options", "sizes", "method", "sweep"}
SWEEP_KEYS = {"episodes", "eval_limit", "split"}
# set by the grid itself, per cell
CELL_KEYS = {"task", "episodes", "output_dir", "method"}


class GridError(FishdipError):
    """The grid file is malformed."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a task, a training size, a method label and one episode."""

    task: str
    size: str
    method: str
    episode: int
    options: dict = field(hash=False, compare=False)  # fishdip train options, lists still unswept

    @property
    def path(self) -> str:
        return f"{self.task}/{self.size}/{self.method}/episode-{self.episode}"

    @property
    def swept(self) -> dict[str, list]:
        return {k: v for k, v in self.options.items() if isinstance(v, list)}

    @property
    def candidates(self) -> list[dict]:
        """Every combination of the swept values ([{}] when nothing is swept)."""
        return [dict(zip(self.swept, values)) for values in itertools.product(*self.swept.values())]


@dataclass
class Grid:
    source: Path
    output_dir: Path
    tasks: list[str]
    sizes: list[tuple[str, dict]]  # label -> options
    methods: list[tuple[str, dict]]  # label -> options
    episodes: list[int]
    options: dict
    metric: str | None
    sweep: dict
    overrides: dict = field(default_factory=dict)  # options given on the command line: they beat the file's
    warnings: list[str] = field(default_factory=list)  # options without effect in some cells, said once

    def cells(self) -> list[Cell]:
        """Every cell, in the order they run: task, size, episode, then method."""
        return [Cell(task, size, label, episode,
                     {**self.options, "task": task, **size_opts, **method_opts, **self.overrides})
                for task in self.tasks for size, size_opts in self.sizes
                for episode in self.episodes for label, method_opts in self.methods]


def _size_label(options: dict, where: str) -> str:
    if "train_size" in options:
        return f"size-{options['train_size']}"
    if "train_fraction" in options:
        return f"fraction-{options['train_fraction']:g}"
    raise GridError(f"{where}: give train_size or train_fraction")


def load_grid(path: str | Path, output_dir: str | None = None, overrides: dict | None = None) -> Grid:
    """Read and check a grid file; every cell's options are validated before anything runs.
    ``overrides``: options for every cell that replace the file's (``fishdip experiment --model``)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise GridError(f"{path}: cannot read the grid file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise GridError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(GRID_KEYS))})")
    for key in ("tasks", "methods"):
        if not isinstance(raw.get(key), list) or not raw[key] or not all(isinstance(x, str) for x in raw[key]):
            raise GridError(f"{path}: `{key}` must be a non-empty list of names")
    for key in ("methods", "tasks"):
        repeated = sorted({x for x in raw[key] if raw[key].count(x) > 1})
        if repeated:
            raise GridError(f"{path}: `{key}` lists {', '.join(repeated)} twice")
    for key in ("options", "method", "sweep"):
        if not isinstance(raw.get(key, {}), dict):
            raise GridError(f"{path}: [{key}] must be a table")
    if not isinstance(raw.get("sizes", []), list) or not all(isinstance(x, dict) for x in raw.get("sizes", [])):
        raise GridError(f"{path}: `sizes` must be a list of [[sizes]] tables")
    tables = raw.get("method", {})
    # what the grid itself sets per cell is refused in the tables (it would be silently replaced)
    placed = [("[options]", raw.get("options", {}), CELL_KEYS)]
    placed += [(f"sizes[{i}]", s, CELL_KEYS) for i, s in enumerate(raw.get("sizes", []))]
    placed += [(f"[method.{label}]", t, CELL_KEYS - {"method"}) for label, t in tables.items() if isinstance(t, dict)]
    for where, table, grid_level in placed:
        misplaced = sorted(set(table) & grid_level)
        if misplaced:
            raise GridError(f"{path}: {where}: {', '.join(misplaced)} is set by the grid (`tasks`, `methods`, "
                            "`episodes`, `output_dir` at the top of the file), not in a table")
    for label in tables:
        if label not in raw["methods"]:
            raise GridError(f"{path}: [method.{label}] is not in `methods`")
    methods = []
    for label in raw["methods"]:
        opts = dict(tables.get(label, {}))
        opts.setdefault("method", label)
        if opts["method"] not in METHODS:
            raise GridError(f"{path}: method label {label!r} needs a [method.{label}] table with method = one of "
                            f"{', '.join(METHODS)}")
        methods.append((label, opts))
    sizes = [(_size_label(s, f"{path}: sizes[{i}]"), dict(s)) for i, s in enumerate(raw.get("sizes", [{}]))] \
        if raw.get("sizes") else [("all", {})]
    episodes = raw.get("episodes", [1])
    if not isinstance(episodes, list) or not episodes or len(set(map(repr, episodes))) < len(episodes) or \
            not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in episodes):
        raise GridError(f"{path}: episodes {episodes!r}: must be a non-empty list of episode numbers >= 0, "
                        "each once, e.g. [1, 2, 3]")
    sweep = dict(raw.get("sweep", {}))
    if set(sweep) - SWEEP_KEYS:
        raise GridError(f"{path}: [sweep] knows {', '.join(sorted(SWEEP_KEYS))}")
    if sweep.get("split", "dev") != "dev":
        why = " (choosing values on the test split would select on it)" if sweep["split"] == "test" else ""
        raise GridError(f"{path}: [sweep] split {sweep['split']!r}: must be 'dev'{why}")
    sweep_episodes = sweep.get("episodes", [1])
    if not isinstance(sweep_episodes, list) or not sweep_episodes or \
            not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in sweep_episodes):
        raise GridError(f"{path}: [sweep] episodes {sweep_episodes!r}: must be a non-empty list of episode numbers")
    limit = sweep.get("eval_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise GridError(f"{path}: [sweep] eval_limit {limit!r}: must be a whole number >= 1")
    grid = Grid(source=path, output_dir=Path(output_dir or raw.get("output_dir") or path.with_suffix("")),
                tasks=list(raw["tasks"]), sizes=sizes, methods=methods, episodes=list(episodes),
                options=dict(raw.get("options", {})), metric=raw.get("metric"),
                sweep={"episodes": [1], "eval_limit": None, "split": "dev", **sweep}, overrides=dict(overrides or {}))
    for cell in grid.cells():
        fixed = set(cell.options) & (CELL_KEYS - {"task", "method"})
        if fixed:
            raise GridError(f"{path}: {', '.join(sorted(fixed))} are set by the grid, not in the options")
        for chosen in cell.candidates:
            try:
                cfg = cell_config(grid, cell, chosen)
            except ConfigError as exc:
                raise GridError(f"{path}: {exc}") from None
            # refusing would break grids whose [options] serve several methods: said once per label instead
            family = DATASETS[cfg.task].family if cfg.task in DATASETS else None  # a user's file: from its data
            for option in unused_options(cfg, [cfg.train.method], family):
                note = f"{path}: method {cell.method}: {option} has no effect on its cells"
                if note not in grid.warnings:
                    grid.warnings.append(note)
    reported = dict.fromkeys(m for task in grid.tasks for m in task_class(task).metrics)
    if grid.metric is not None and grid.metric not in reported:
        raise GridError(f"{path}: metric {grid.metric!r} is not one its tasks report (one of {', '.join(reported)})")
    return grid


def cell_config(grid: Grid, cell: Cell, chosen: dict, sweep: bool = False) -> ExperimentConfig:
    """The run config of a cell (``sweep``: of its sweep run for the ``chosen`` values)."""
    options = {**{k: v for k, v in cell.options.items() if not isinstance(v, list)}, **chosen}
    if sweep:
        options.update(eval_split=grid.sweep["split"], episodes=list(grid.sweep["episodes"]),
                       output_dir=str(grid.output_dir / sweep_folder(cell, chosen)))
        if grid.sweep["eval_limit"]:
            options["eval_limit"] = grid.sweep["eval_limit"]
    else:
        options.update(episodes=[cell.episode], output_dir=str(grid.output_dir / cell.path))
    try:
        cfg, _ = configs_from_options(options)
    except ConfigError as exc:
        raise ConfigError(f"cell {cell.path}: {exc}") from None
    return cfg


def sweep_folder(cell: Cell, chosen: dict) -> str:
    values = "_".join(f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in chosen.items())
    return f"{cell.task}/{cell.size}/{cell.method}/sweep/{values}"


def matches(cell: Cell, patterns: list[str]) -> bool:
    """``--only``: a glob on the cell's path, or a prefix of it (``conll04/size-9``)."""
    return not patterns or any(fnmatch.fnmatch(cell.path, p) or cell.path.startswith(p.rstrip("/") + "/")
                               for p in patterns)


def headline_metric(grid: Grid, task: str, aggregate: dict) -> str:
    """What a sweep selects on: the grid's metric, else the task family's first one reported."""
    if grid.metric:
        if grid.metric not in aggregate:
            raise GridError(f"{grid.source}: metric {grid.metric!r} is not reported (reported: "
                            f"{', '.join(k for k in aggregate if isinstance(aggregate[k], dict))})")
        return grid.metric
    for metric in task_class(task).metrics:
        if metric in aggregate:
            return metric
    raise GridError(f"{grid.source}: task {task} reports none of its family's metrics ({', '.join(aggregate)})")


def choose(grid: Grid, cell: Cell, run: Callable[[ExperimentConfig], dict], log=print) -> dict:
    """The swept options' values for ``cell``: the best dev score, recorded in ``sweep.json``
    (ties: the earlier value in the grid file)."""
    if not cell.swept:
        return {}
    recorded = recorded_choice(grid, cell)
    if recorded is not None:
        return recorded
    candidates, scores = cell.candidates, []
    for chosen in candidates:
        results = run(cell_config(grid, cell, chosen, sweep=True))
        metric = headline_metric(grid, cell.task, results["aggregate"])
        scores.append(results["aggregate"][metric]["mean"])
        log(f"  sweep {chosen}: {grid.sweep['split']} {metric} {100 * scores[-1]:.1f}")
    best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    write_json_atomic(_sweep_record(grid, cell), {
        "metric": metric, "split": grid.sweep["split"], "episodes": grid.sweep["episodes"],
        "eval_limit": grid.sweep["eval_limit"], "candidates": candidates, "scores": scores,
        "chosen": candidates[best]})
    return candidates[best]


def _sweep_record(grid: Grid, cell: Cell) -> Path:
    return grid.output_dir / cell.task / cell.size / cell.method / "sweep.json"


def recorded_choice(grid: Grid, cell: Cell) -> dict | None:
    """The values a finished sweep chose for the cell's current candidates, else None."""
    path = _sweep_record(grid, cell)
    record = read_json(path) if path.is_file() else {}
    return record["chosen"] if record.get("candidates") == cell.candidates else None


def _finished_seconds(folder: Path) -> float | None:
    """Seconds a finished cell took (for the time estimate), None if it is not finished."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    results = read_json(path)
    if not results.get("complete"):
        return None
    return sum(e.get("seconds", 0.0) for e in results.get("episodes", []))


def _changes(grid: Grid, cell: Cell) -> list[str]:
    """How a finished cell's recorded options differ from what the grid file now says (as
    ``name: recorded -> grid file``; or that its sweep must run again to tell); empty: they agree."""
    chosen = recorded_choice(grid, cell) if cell.swept else {}
    if chosen is None:
        return ["its learning-rate sweep is not recorded"]
    old = read_json(grid.output_dir / cell.path / "config.json")
    new = {**cell_config(grid, cell, chosen).to_dict(), "data_files": old.get("data_files", {}),
           "fishdip_version": old.get("fishdip_version")}  # the version is checked when a cell runs
    return differences(old, new)


def estimate(cell: Cell, seconds: dict[tuple[str, str], list[float]],
             sweep_seconds: dict[tuple[str, str], list[float]] | None = None, sweep_runs: int = 0) -> float | None:
    """Seconds a cell will take: the mean of finished cells of its size and method, else of all;
    plus its ``sweep_runs`` dev-sweep runs when the cell is the one that runs its method's sweep
    (each timed like finished sweep runs, else like a cell)."""
    run = _mean_seconds(seconds, (cell.size, cell.method))
    if run is None or not sweep_runs:
        return run
    return run + sweep_runs * (_mean_seconds(sweep_seconds or {}, (cell.size, cell.method)) or run)


def _mean_seconds(seconds: dict[tuple[str, str], list[float]], key: tuple[str, str]) -> float | None:
    pool = seconds.get(key) or [s for v in seconds.values() for s in v]
    return sum(pool) / len(pool) if pool else None


def _sweeps_to_run(grid: Grid, todo: list[Cell]) -> dict[str, int]:
    """Cell path -> how many sweep runs it starts with: a method's sweep runs once per task and
    size, before the first of its cells that runs, unless it is recorded."""
    runs, seen = {}, set()
    for cell in todo:
        key = (cell.task, cell.size, cell.method)
        if cell.swept and key not in seen and recorded_choice(grid, cell) is None:
            runs[cell.path] = len(cell.candidates)
        seen.add(key)
    return runs


def _finished_sweep_seconds(grid: Grid, cells: list[Cell]) -> dict[tuple[str, str], list[float]]:
    """Seconds the finished sweep runs took, by size and method (candidates no longer in the
    grid file count too: they time the same kind of run)."""
    seconds: dict[tuple[str, str], list[float]] = {}
    one_per_sweep = {(c.task, c.size, c.method): c for c in cells if c.swept}.values()
    for cell in one_per_sweep:  # the sweep runs lie in `sweep/` beside the sweep's record
        for path in sorted(_sweep_record(grid, cell).with_name("sweep").glob("*/results.json")):
            took = _finished_seconds(path.parent)
            if took is not None:
                seconds.setdefault((cell.size, cell.method), []).append(took)
    return seconds


def _continued_note(grid: Grid, cell: Cell) -> str:
    """A dry run's word on a cell stopped before its end: the estimate is a whole run's, but the cell
    continues from its saved training state (training/checkpoint.py) if that still matches the run."""
    saved = saved_progress(checkpoint_path(grid.output_dir / cell.path, cell.episode))
    if saved is None:
        return ""
    step, seconds = saved
    return f", a whole run; its training checkpoint: step {step}, {_clock(seconds)} trained"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def run_grid(grid: Grid, only: list[str] | None = None, progress: bool = True, log=print,
             dry_run: bool = False) -> dict[str, str]:
    """Run every selected cell not yet finished; returns cell path -> finished | failed: reason |
    pending (dry run). A failing cell is logged and the grid goes on."""
    cells = [c for c in grid.cells() if matches(c, only or [])]
    if not cells:
        raise GridError(f"--only {' '.join(only or [])}: no cell of {grid.source} matches "
                        f"(cells look like {grid.cells()[0].path})")
    grid.output_dir.mkdir(parents=True, exist_ok=True)
    if not dry_run:  # the grid file travels with its results: `fishdip report` reads labels and order
        given = "".join(f" --{k.replace('_', '-')} {v}" for k, v in grid.overrides.items())
        text = grid.source.read_text()
        write_text_atomic(grid.output_dir / "grid.toml",
                          f"# run as: fishdip experiment {grid.source}{given}\n{text}" if given else text)
    seconds: dict[tuple[str, str], list[float]] = {}
    sweep_seconds = _finished_sweep_seconds(grid, cells)
    status: dict[str, str] = {}
    todo, changes = [], {}
    for cell in cells:
        took = _finished_seconds(grid.output_dir / cell.path)
        changes[cell.path] = _changes(grid, cell) if took is not None else []
        if took is None or changes[cell.path]:  # a changed cell is run, which refuses it by name
            todo.append(cell)
        else:
            seconds.setdefault((cell.size, cell.method), []).append(took)
            status[cell.path] = "finished"
    sweeps = _sweeps_to_run(grid, todo)

    def left(cells: list[Cell]) -> str:
        guesses = [estimate(c, seconds, sweep_seconds, sweeps.get(c.path, 0)) for c in cells]
        return "?" if any(g is None for g in guesses) else _clock(sum(guesses))

    for note in grid.warnings:
        log(f"warning: {note}")
    other = sum(bool(c) for c in changes.values())
    log(f"grid {grid.source}: {len(cells)} cells selected, {len(cells) - len(todo)} finished, {len(todo)} to run "
        f"(estimated {left(todo)}) into {grid.output_dir}/"
        + (f"; {other} of them finished with other settings (running one is refused by name)" if other else ""))
    for i, cell in enumerate(todo, 1):
        if dry_run:
            status[cell.path] = "pending"
            note = f", a {sweeps[cell.path]}-run dev sweep included" if cell.path in sweeps else ""
            if changes[cell.path]:  # e.g. a protocol file run with --model embedded, read without it
                note += f"; finished with other settings, recorded -> grid file: {'; '.join(changes[cell.path])}"
            note += _continued_note(grid, cell)
            log(f"  {cell.path}  (~{left([cell])}{note})")
            continue
        log(f"[{i}/{len(todo)}] {cell.path}  (left, this one included: ~{left(todo[i - 1:])})")

        def sweep_run(cfg: ExperimentConfig, key=(cell.size, cell.method)) -> dict:
            started = time.perf_counter()
            results = run_experiment(cfg, progress=progress, log=_silent)
            sweep_seconds.setdefault(key, []).append(time.perf_counter() - started)
            return results

        try:
            chosen = choose(grid, cell, sweep_run, log)
            if chosen:
                log(f"  chosen on {grid.sweep['split']}: {chosen}")
            started = time.perf_counter()
            run_experiment(cell_config(grid, cell, chosen), progress=progress, log=log)
        except (FishdipError, RuntimeError, OSError) as exc:  # e.g. out of memory: the other cells go on
            status[cell.path] = f"failed: {exc}"
            log(f"  failed: {exc}")
            continue
        seconds.setdefault((cell.size, cell.method), []).append(time.perf_counter() - started)
        status[cell.path] = "finished"
    return status


def _silent(*_) -> None:
    """A sweep run's log lines: the grid prints its own."""
