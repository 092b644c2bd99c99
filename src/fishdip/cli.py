"""Command line: ``fishdip train | experiment | report | evaluate | predict | export | data fetch``."""

from __future__ import annotations

import inspect
import json
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from fishdip.errors import FishdipError
from fishdip.options import ConfigError, allowed, check_value, option_name
from fishdip.runs.config import ExperimentConfig, check_device, check_model, configs_from_options
from fishdip.tasks.options import DataOptions, GenerationOptions
from fishdip.training.config import TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="FISH-DIP sparse fine-tuning for unified sequence labeling.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Find and download datasets.")
app.add_typer(data_app, name="data")

def _help(cls, name: str) -> str:
    return cls.__dataclass_fields__[name].metadata.get("help", "")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(2)


# options of `train` that are not config fields
_CLI_ONLY = {
    "overwrite": (bool, False, "replace a different or finished run in --output-dir (its files are removed first)"),
    "quiet": (bool, False, "no progress bars"),
}


def _plain(kind):
    """``int | None`` -> ``Optional[int]`` (the spelling typer reads)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if type(None) in typing.get_args(kind) and len(args) == 1:
        return Optional[args[0]]
    return kind


def _config_options() -> list[inspect.Parameter]:
    """One CLI option per field of ExperimentConfig and TrainConfig, with the field's help and range."""
    params = []
    first = ("task", "model", "episodes")  # then the data options (inherited from DataOptions), then the rest
    for cls in (ExperimentConfig, TrainConfig):
        hints = typing.get_type_hints(cls)
        for f in sorted(fields(cls), key=lambda f: first.index(f.name) if f.name in first else len(first)):
            if f.name == "train":
                continue
            kind = _plain(hints[f.name])
            default = f.default if f.default is not MISSING else f.default_factory()
            text = f.metadata.get("help", "")
            if f.name == "episodes":
                kind, default = str, "1"
            elif f.name == "method":
                text += "; a comma list (full,fish-dip) runs each on the same subsets and compares them"
            elif f.name == "output_dir":
                kind, default = Optional[str], None
            elif f.name == "task":  # left None when not given: --train-file then names the task
                kind, default, text = Optional[str], None, text + f"; default {f.default}"
            if allowed(f) and "choices" not in f.metadata:
                text += f" [{allowed(f)}]"
            name = option_name(f)
            if kind is bool:
                name = f"{name}/--no-{name[2:]}"
            option = typer.Option(name, help=text, show_default=f.name != "output_dir")
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[kind, option]))
    for name, (kind, default, text) in _CLI_ONLY.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, typer.Option(help=text)]))
    return params


def _given(ctx: typer.Context, options: dict) -> set[str]:
    """The options set on the command line (or from the environment), not left at their defaults."""
    sources = {name: ctx.get_parameter_source(name) for name in options}
    return {name for name, source in sources.items() if source is not None and
            source.name not in ("DEFAULT", "DEFAULT_MAP")}


def train(ctx: typer.Context, **options) -> None:
    """Fine-tune a model on a (low-resource subset of a) task and evaluate it."""
    cfg = None
    try:  # option values first (configs check themselves): a mistake is refused before torch is imported
        cfg, methods = configs_from_options({k: v for k, v in options.items() if k not in _CLI_ONLY},
                                             _given(ctx, options))
        from fishdip.runs.experiment import run_comparison
        from fishdip.training.distributed import setup

        dist = setup(cfg.device)  # several processes when started by torchrun / accelerate launch
        results = run_comparison(cfg, methods, overwrite=options["overwrite"], progress=not options["quiet"],
                                 log=lambda s: typer.echo(s, err=True), dist=dist)
        if not dist.main:
            return
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        where = f" in {cfg.output_dir}/ (results.json, predictions.jsonl)" if cfg is not None else ""
        typer.secho(f"\ninterrupted: finished episodes are kept{where}; run the same command again to resume",
                    fg="yellow", err=True)
        raise typer.Exit(130) from None
    typer.echo(results.table)
    typer.echo(f"results in {cfg.output_dir}/ (comparison.md, losses.png"
               f"{', <method>/results.json' if len(methods) > 1 else ', results.json'})")


train.__signature__ = inspect.Signature([inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                            annotation=typer.Context), *_config_options()])  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command()(train)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="trained model folder (or any model name, with --task)")],
    task: Annotated[Optional[str], typer.Option(help="defaults to the task the model was trained on")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help=_help(ExperimentConfig, "data_dir"))] = None,
    fold: Annotated[int, typer.Option(help=_help(ExperimentConfig, "fold"))] = 0,
    eval_split: Annotated[str, typer.Option(help=_help(ExperimentConfig, "eval_split"))] = "test",
    eval_limit: Annotated[Optional[int], typer.Option(help=_help(ExperimentConfig, "eval_limit"))] = None,
    batch_size: Annotated[int, typer.Option(help="sentences per generation batch")] = 16,
    num_beams: Annotated[int, typer.Option(help="1 = greedy")] = 1,
    decoder: Annotated[Optional[str], typer.Option(help="fishdip or tanl (default: the one the model "
                                                   "was trained with)")] = None,
    output: Annotated[Optional[Path], typer.Option(help="also write the metrics JSON here")] = None,
    device: Annotated[str, typer.Option(help=_help(ExperimentConfig, "device"))] = "auto",
    eval_file: Annotated[Optional[Path], typer.Option(help="score on your own annotated sentences instead of a "
                                                      "split (docs/YOUR-DATA.md)")] = None,
    data_format: Annotated[str, typer.Option(help=_help(ExperimentConfig, "data_format"))] = "auto",
    decoding: Annotated[str, typer.Option(help=_help(ExperimentConfig, "decoding"))] = "auto",
    copy_ahead: Annotated[int, typer.Option(help=_help(ExperimentConfig, "copy_ahead"))] = 0,
) -> None:
    """Score a trained model on a split (or an annotated file); prints metrics as JSON."""
    import fishdip
    from fishdip.io import write_json_atomic

    try:  # every option before the model is loaded (option dataclasses check themselves): no time lost
        DataOptions(data_dir=data_dir, fold=fold, eval_split=eval_split, eval_limit=eval_limit)
        GenerationOptions(batch_size=batch_size, num_beams=num_beams, decoding=decoding, copy_ahead=copy_ahead)
        if decoder is not None:
            check_value(ExperimentConfig.__dataclass_fields__["decoder"], decoder)
        if data_dir is not None and not Path(data_dir).expanduser().is_dir():
            raise ConfigError(f"--data-dir {data_dir}: no such folder")
        if output is not None:
            _check_output_file("--output", output)
        check_device("--device", device)
        check_value(ExperimentConfig.__dataclass_fields__["data_format"], data_format)
        if eval_file is not None and not eval_file.is_file():
            raise ConfigError(f"--eval-file {eval_file}: no such file")
        model = _model_of_run(model)
        check_model("--model", model)
        predictor = fishdip.load(model, decoder=decoder, task=task, data_dir=data_dir, device=device)
        metrics = predictor.evaluate(eval_split, data_dir, limit=eval_limit, batch_size=batch_size,
                                     num_beams=num_beams, fold=fold, progress=True, eval_file=eval_file,
                                     data_format=data_format, decoding=decoding, copy_ahead=copy_ahead)
        if output:
            write_json_atomic(output, metrics)
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _fail(FishdipError(f"--output {output}: {exc.strerror or exc}"))
    typer.echo(json.dumps(metrics, indent=2))


def _check_output_file(option: str, path: Path) -> None:
    """A results file can be written at ``path``: not a folder, in a folder that exists or can be made."""
    from fishdip.runs.config import check_output_dir

    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    check_output_dir(option, str(path.parent))


def _model_of_run(model: str) -> str:
    """A run folder (or a comparison's) stands for its first saved model, as ``fishdip.load`` reads it."""
    from fishdip.runs.rundir import model_folder

    path = Path(model).expanduser()
    if (path.is_dir() and not (path / "config.json").is_file()) or (path / "results.json").is_file():
        try:
            return str(model_folder(path))
        except FishdipError:
            return model
    return model


@app.command()
def rescore(
    run: Annotated[Path, typer.Argument(help="a run folder of `fishdip train` (or its parent, for several "
                                        "methods)")],
    decoder: Annotated[str, typer.Option(help="fishdip or tanl")] = "tanl",
    data_dir: Annotated[Optional[str], typer.Option(help="where the data is now, if not where the run "
                                                    "read it")] = None,
    output: Annotated[Optional[Path], typer.Option(help="also write the metrics JSON here")] = None,
    decoding: Annotated[Optional[str], typer.Option(help="not for rescoring: constrained decoding changes what "
                                                    "the model writes, which needs the model (fishdip evaluate "
                                                    "--decoding)")] = None,
) -> None:
    """Decode a run's stored generations again with another decoder and score them (no model needed)."""
    from fishdip.io import write_json_atomic
    from fishdip.reports.comparison import comparison_table
    from fishdip.runs.rescore import rescore_run, run_folders

    try:  # the options first, then the run: a mistake costs no decoding
        if decoding is not None:
            raise ConfigError(f"--decoding {decoding}: rescore decodes the run's stored generations again; a "
                              "decoding changes what the model generates, which needs the model: fishdip evaluate "
                              f"--model RUN --decoding {decoding}")
        check_value(ExperimentConfig.__dataclass_fields__["decoder"], decoder)
        if data_dir is not None and not Path(data_dir).expanduser().is_dir():
            raise ConfigError(f"--data-dir {data_dir}: no such folder")
        if output is not None:
            _check_output_file("--output", output)
        results = {folder.name: rescore_run(folder, decoder, data_dir) for folder in run_folders(run)}
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    if output:
        write_json_atomic(output, results)
    typer.echo(f"decoder: {decoder} (scores x100)")
    typer.echo(comparison_table(results, times=False))


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Option(help="a model folder written by `fishdip train` (models/episode-<i>), "
                                       "or its run folder")],
    text: Annotated[Optional[list[str]], typer.Argument(help="sentences to annotate")] = None,
    input: Annotated[Optional[Path], typer.Option(help="file with one sentence per line ('-' = stdin)")] = None,
    pretokenized: Annotated[bool, typer.Option(help="the sentences are already tokenized: split on spaces "
                                               "only")] = False,
    batch_size: Annotated[int, typer.Option(help="sentences per generation batch", min=1)] = 16,
    device: Annotated[str, typer.Option(help=_help(ExperimentConfig, "device"))] = "auto",
    decoding: Annotated[str, typer.Option(help=_help(ExperimentConfig, "decoding"))] = "auto",
    copy_ahead: Annotated[int, typer.Option(help=_help(ExperimentConfig, "copy_ahead"))] = 0,
) -> None:
    """Annotate raw sentences; prints one JSON object per sentence, with token spans and character offsets."""
    import fishdip

    lines = list(text or [])
    try:
        if input is not None:
            lines += (sys.stdin.read() if str(input) == "-" else input.read_text(encoding="utf-8")).splitlines()
    except OSError as exc:
        _fail(FishdipError(f"--input {input}: {exc.strerror or exc}"))
    except UnicodeDecodeError as exc:
        _fail(FishdipError(f"--input {input}: not UTF-8 text (byte {exc.start}: {exc.reason})"))
    lines = [line for line in lines if line.strip()]
    if not lines:
        _fail(ValueError("give sentences as arguments or with --input"))
    try:
        check_device("--device", device)
        model = _model_of_run(model)
        check_model("--model", model)
        GenerationOptions(batch_size=batch_size, decoding=decoding, copy_ahead=copy_ahead)  # checks the values
        predictor = fishdip.load(model, device=device)
        results = predictor.predict([line.split() if pretokenized else line for line in lines], batch_size,
                                    decoding, copy_ahead)
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    for row in results:
        typer.echo(json.dumps(row, ensure_ascii=False))


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="a saved model (models/episode-<i>, delta or full) or a run folder")],
    output: Annotated[Path, typer.Option(help="folder to write the complete model into")],
    episode: Annotated[Optional[int], typer.Option(help="which episode's model of a run (default: the first)")] = None,
    method: Annotated[Optional[str], typer.Option(help="which method's run, in a comparison folder")] = None,
) -> None:
    """Write a complete model folder (a delta merged onto its base model), loadable by transformers alone."""
    from fishdip.models.loading import load_model, read_fishdip_metadata, save_model
    from fishdip.runs.rundir import model_folder

    try:
        folder = model_folder(source, episode, method)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise FishdipError(f"--output {output}: exists and is not an empty folder; nothing was written")
        loaded = load_model(str(folder))
        meta = read_fishdip_metadata(str(folder)) or {}
        meta = {k: v for k, v in meta.items() if k not in ("base_checksum", "delta_entries", "adapter_parameters",
                                                          "generation_budget")}
        save_model(loaded, output, {**meta, "exported_from": str(folder.resolve())})
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _fail(FishdipError(f"--output {output}: {exc.strerror or exc}"))
    typer.echo(f"{folder} -> {output} (a complete model: transformers' from_pretrained loads it)")


@app.command()
def experiment(
    grid_file: Annotated[Path, typer.Argument(help="the grid: a TOML file (see docs/GRID.md)")],
    output_dir: Annotated[Optional[str], typer.Option(help="where the cells go (default: the file's "
                                                      "output_dir)")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="run only cells whose path matches this glob or "
                                                      "prefix, e.g. conll04/size-9 or '*/fish-dip/*' "
                                                      "(repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option(help="list the cells still to run, with time estimates; "
                                          "run nothing")] = False,
    model: Annotated[Optional[str], typer.Option(help="the model of every cell, replacing the file's (e.g. "
                                                 "embedded, t5-large)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Run a grid of tasks x sizes x methods x episodes; a rerun skips finished cells and resumes."""
    from fishdip.runs.grid import load_grid, run_grid

    try:
        grid = load_grid(grid_file, output_dir, overrides={"model": model} if model else None)
        status = run_grid(grid, only, progress=not quiet, log=lambda s: typer.echo(s, err=True), dry_run=dry_run)
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        typer.secho("\ninterrupted: finished cells are kept; run the same command again to go on",
                    fg="yellow", err=True)
        raise typer.Exit(130) from None
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    done = sum(v == "finished" for v in status.values())
    typer.echo(f"{done}/{len(status)} selected cells finished" + (f", {len(failed)} failed:" if failed else ""))
    for path, why in failed.items():
        typer.echo(f"  {path}: {why}")
    if failed:
        raise typer.Exit(1)


@app.command()
def report(
    runs_dir: Annotated[Path, typer.Argument(help="a grid's output folder")],
    output: Annotated[Optional[Path], typer.Option(help="where to write (default: RUNS_DIR/report)")] = None,
    metric: Annotated[Optional[str], typer.Option(help="headline metric (default: the grid's, else the first)")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="the method label every other is compared with (default: full, else the grid's first)")] = None,
    focus: Annotated[Optional[str], typer.Option(
        help="the method label compared with every other (default: fish-dip, where the grid has it)")] = None,
    min_episodes: Annotated[Optional[int], typer.Option(
        help="episodes a comparison needs before its verdict can be higher or lower (its 95 % interval must "
             "also exclude 0; default 10); fewer: 'undecided at N episodes'")] = None,
) -> None:
    """Tables (markdown, CSV) with paired statistics, and plots, of a grid's finished cells."""
    from fishdip.reports.grid import write_report

    try:
        out = write_report(runs_dir, output, metric, baseline, focus, min_episodes)
    except (FishdipError, ValueError, OSError) as exc:
        _fail(exc if isinstance(exc, FishdipError) else FishdipError(f"{runs_dir}: {exc}"))
    typer.echo((out / "report.md").read_text())
    typer.echo(f"report in {out}/ (report.md, report.csv, *.png)")


@app.command()
def tasks(
    data_dir: Annotated[Optional[str], typer.Option(help="also report which datasets are found here")] = None,
) -> None:
    """List tasks and datasets: family, expected files, where the data comes from."""
    from fishdip.data.datasets import DATASETS, dataset_dir

    for spec in DATASETS.values():
        try:
            found = f"found in {dataset_dir(spec, data_dir)}"
        except FishdipError:
            found = "not found"
        files = "; ".join(f"{split}: {' or '.join(names)}" for split, names in spec.splits.items())
        typer.echo(f"{spec.name}  [{spec.family}]  ({found})")
        typer.echo(f"    files   {files}" + (f"; types: {spec.types_file}" if spec.types_file else ""))
        if spec.folds:
            typer.echo(f"    folds   0..{spec.folds - 1} (--fold)")
        typer.echo(f"    source  {spec.source}")
        typer.echo(f"    metric  {spec.metric}")
        if spec.notes:
            typer.echo(f"    notes   {spec.notes}")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="dataset to download, e.g. conll04")],
    dest: Annotated[Optional[Path], typer.Option(help="root folder (default: the fishdip cache)")] = None,
) -> None:
    """Download a dataset from its public source and verify its checksums."""
    from fishdip.data.fetch import fetch

    try:
        folder = fetch(name, dest)
    except FishdipError as exc:
        _fail(exc)
    typer.echo(f"{name}: files verified in {folder}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: a mistyped option or value is one line on stderr and exit code 2, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        app(args=argv)  # no arguments: the help text
        return
    try:
        code = app(args=argv, standalone_mode=False)
    except OSError as exc:  # a full disk, a folder that cannot be made: the machine, not a bug in fishdip
        where = f"{exc.filename}: " if exc.filename else ""
        typer.secho(f"error: {where}{exc.strerror or exc}", fg="red", err=True)
        sys.exit(2)
    except Exception as exc:  # typer ships its own copy of click: match its exceptions by name
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "UsageError" in kinds:
            typer.secho(f"error: {exc.format_message()}", fg="red", err=True)
            sys.exit(2)
        if "Abort" in kinds:
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)
