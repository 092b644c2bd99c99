"""Command line: ``fishdip train | evaluate | predict | data fetch``."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from fishdip.errors import FishdipError
from fishdip.training.config import ExperimentConfig, TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="FISH-DIP sparse fine-tuning for unified sequence labeling.")
data_app = typer.Typer(no_args_is_help=True, help="Find and download datasets.")
app.add_typer(data_app, name="data")

_T, _E = TrainConfig(), ExperimentConfig()


def _help(cls, name: str) -> str:
    return cls.__dataclass_fields__[name].metadata.get("help", "")


def parse_episodes(text: str) -> list[int]:
    """``"1-3"`` -> [1, 2, 3]; ``"1,4,7"`` -> [1, 4, 7]."""
    out: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise typer.BadParameter(f"episodes look like 1-3 or 1,4,7, got {text!r}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        out.extend(range(lo, hi + 1))
    return out


def default_output_dir(task: str, methods: list[str]) -> str:
    """A new folder per run, never a shared one: ``runs/<task>-<methods>-<date>-<time>``."""
    import time

    return f"runs/{task}-{'+'.join(methods)}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_layout(out: Path, methods: list[str], overwrite: bool) -> None:
    """One method writes its run into ``out``; several write one run each into ``out/<method>``."""
    from fishdip.training.rundir import remove_run

    single_here = (out / "config.json").is_file()
    subruns = sorted(p.parent.name for p in out.glob("*/config.json") if p.parent.name != "meta-model")
    if len(methods) > 1 and single_here or len(methods) == 1 and subruns:
        if not overwrite:
            held = "a single-method run" if single_here else f"runs of {', '.join(subruns)}"
            raise FishdipError(f"--output-dir {out} holds {held}: choose another folder or pass --overwrite")
        remove_run(out)
        for name in subruns:
            remove_run(out / name)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(2)


@app.command()
def train(
    task: Annotated[str, typer.Option(help=_help(ExperimentConfig, "task"))] = _E.task,
    method: Annotated[str, typer.Option(help="one method or a comma list, e.g. full,fish-dip "
                                        "(runs each on the same subsets and prints a table)")] = _T.method,
    model: Annotated[str, typer.Option(help=_help(ExperimentConfig, "model"))] = _E.model,
    data_dir: Annotated[Optional[str], typer.Option(help=_help(ExperimentConfig, "data_dir"))] = None,
    fold: Annotated[int, typer.Option(help=_help(ExperimentConfig, "fold"))] = 0,
    strict_tags: Annotated[bool, typer.Option(help=_help(ExperimentConfig, "strict_tags"))] = False,
    train_fraction: Annotated[Optional[float], typer.Option(help=_help(ExperimentConfig, "train_fraction"))] = None,
    train_size: Annotated[Optional[int], typer.Option(help=_help(ExperimentConfig, "train_size"))] = None,
    episodes: Annotated[str, typer.Option(help="episodes, e.g. 1-3; episode i samples with seed i")] = "1",
    eval_split: Annotated[str, typer.Option(help=_help(ExperimentConfig, "eval_split"))] = _E.eval_split,
    eval_limit: Annotated[Optional[int], typer.Option(help=_help(ExperimentConfig, "eval_limit"))] = None,
    decoder: Annotated[str, typer.Option(help=_help(ExperimentConfig, "decoder"))] = _E.decoder,
    rc_score: Annotated[str, typer.Option(help=_help(ExperimentConfig, "rc_score"))] = _E.rc_score,
    n_way: Annotated[int, typer.Option(help=_help(ExperimentConfig, "n_way"))] = _E.n_way,
    k_shot: Annotated[int, typer.Option(help=_help(ExperimentConfig, "k_shot"))] = _E.k_shot,
    queries: Annotated[int, typer.Option(help=_help(ExperimentConfig, "n_queries"))] = _E.n_queries,
    meta_train: Annotated[Optional[str], typer.Option(help=_help(ExperimentConfig, "meta_train"))] = None,
    meta_train_size: Annotated[int, typer.Option(help=_help(ExperimentConfig, "meta_train_size"))] = 400,
    meta_train_epochs: Annotated[int, typer.Option(help=_help(ExperimentConfig, "meta_train_epochs"))] = 1,
    eval_batch_size: Annotated[int, typer.Option(help=_help(ExperimentConfig, "eval_batch_size"))] = _E.eval_batch_size,
    num_beams: Annotated[int, typer.Option(help=_help(ExperimentConfig, "num_beams"))] = 1,
    output_dir: Annotated[Optional[str], typer.Option(help=_help(ExperimentConfig, "output_dir"))] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a different or finished run in --output-dir "
                                            "(its files are removed first)")] = False,
    save_model: Annotated[bool, typer.Option(help=_help(ExperimentConfig, "save_model"))] = True,
    device: Annotated[str, typer.Option(help=_help(ExperimentConfig, "device"))] = _E.device,
    epochs: Annotated[int, typer.Option(help=_help(TrainConfig, "epochs"))] = _T.epochs,
    batch_size: Annotated[int, typer.Option(help=_help(TrainConfig, "batch_size"))] = _T.batch_size,
    grad_accum_steps: Annotated[int, typer.Option(help=_help(TrainConfig, "grad_accum_steps"))] = 1,
    lr: Annotated[Optional[float], typer.Option(help=_help(TrainConfig, "lr"))] = None,
    warmup_ratio: Annotated[float, typer.Option(help=_help(TrainConfig, "warmup_ratio"))] = 0.0,
    optimizer: Annotated[str, typer.Option(help=_help(TrainConfig, "optimizer"))] = _T.optimizer,
    weight_decay: Annotated[float, typer.Option(help=_help(TrainConfig, "weight_decay"))] = 0.0,
    max_grad_norm: Annotated[float, typer.Option(help=_help(TrainConfig, "max_grad_norm"))] = _T.max_grad_norm,
    max_length: Annotated[int, typer.Option(help=_help(TrainConfig, "max_length"))] = _T.max_length,
    sparsity: Annotated[float, typer.Option(help=_help(TrainConfig, "sparsity"))] = _T.sparsity,
    refresh_steps: Annotated[int, typer.Option(help=_help(TrainConfig, "refresh_steps"))] = _T.refresh_steps,
    regressing_samples: Annotated[Optional[int], typer.Option(help=_help(TrainConfig, "regressing_samples"))] = None,
    fisher: Annotated[str, typer.Option(help=_help(TrainConfig, "fisher"))] = _T.fisher,
    fish_samples: Annotated[int, typer.Option(help=_help(TrainConfig, "fish_samples"))] = _T.fish_samples,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Fine-tune a model on a (low-resource subset of a) task and evaluate it."""
    from fishdip.report import write_comparison
    from fishdip.training.experiment import run_experiment

    methods = [m.strip() for m in method.split(",") if m.strip()]
    output_dir = output_dir or default_output_dir(task, methods)
    base_train = TrainConfig(
        method=methods[0], epochs=epochs, batch_size=batch_size, grad_accum_steps=grad_accum_steps,
        lr=lr, warmup_ratio=warmup_ratio, optimizer=optimizer, weight_decay=weight_decay,
        max_grad_norm=max_grad_norm, max_length=max_length, sparsity=sparsity,
        refresh_steps=refresh_steps, regressing_samples=regressing_samples, fisher=fisher,
        fish_samples=fish_samples)
    cfg = ExperimentConfig(
        task=task, model=model, data_dir=data_dir, fold=fold, strict_tags=strict_tags,
        train_fraction=train_fraction,
        train_size=train_size, episodes=parse_episodes(episodes), eval_split=eval_split,
        eval_limit=eval_limit, decoder=decoder, rc_score=rc_score, n_way=n_way, k_shot=k_shot,
        n_queries=queries, meta_train=meta_train, meta_train_size=meta_train_size,
        meta_train_epochs=meta_train_epochs, eval_batch_size=eval_batch_size, num_beams=num_beams,
        output_dir=output_dir, save_model=save_model, device=device, train=base_train)
    done: list[str] = []
    try:
        for m in methods:
            replace(cfg, train=replace(base_train, method=m)).validate()
        check_layout(Path(output_dir), methods, overwrite)
        results = {}
        for m in methods:
            sub = output_dir if len(methods) == 1 else str(Path(output_dir) / m)
            run_cfg = replace(cfg, output_dir=sub, train=replace(base_train, method=m))
            results[m] = run_experiment(run_cfg, progress=not quiet, log=lambda s: typer.echo(s, err=True),
                                        meta_dir=Path(output_dir) / "meta-model", overwrite=overwrite)
            done.append(m)
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        typer.secho(f"\ninterrupted: finished episodes are kept in {output_dir}/ "
                    f"(results.json, predictions.jsonl); run the same command again to resume", fg="yellow", err=True)
        raise typer.Exit(130) from None
    table = write_comparison(results, Path(output_dir))
    typer.echo(table)
    typer.echo(f"results in {output_dir}/ (comparison.md, losses.png"
               f"{', <method>/results.json' if len(methods) > 1 else ', results.json'})")


def _load_trained(model: str, task: Optional[str], data_dir: Optional[str], decoder: Optional[str] = None):
    from fishdip.models.loading import load_model, read_fishdip_metadata
    from fishdip.tasks import load_task, task_from_metadata

    meta = read_fishdip_metadata(model)
    if meta is None and task is None:
        raise FishdipError(f"{model} is not a fishdip-trained model folder: pass --task")
    task_obj = load_task(task, data_dir, decoder or "fishdip") if task else task_from_metadata(meta, decoder)
    return load_model(model), task_obj, (meta or {}).get("max_length", 256)


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
) -> None:
    """Score a trained model on a split; prints metrics as JSON."""
    from fishdip.data.datasets import load_split
    from fishdip.io import write_json_atomic

    try:
        loaded, task_obj, max_length = _load_trained(model, task, data_dir, decoder)
        examples, _ = load_split(task_obj.dataset, eval_split, data_dir, fold)
        examples = examples[:eval_limit] if eval_limit else examples
        cfg = ExperimentConfig(eval_batch_size=batch_size, num_beams=num_beams,
                               train=TrainConfig(max_length=max_length))
        _, decoded = task_obj.predict(loaded, examples, cfg)  # events chain two passes, etc.
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    metrics = task_obj.score(examples, decoded)
    if output:
        write_json_atomic(output, metrics)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def rescore(
    run: Annotated[Path, typer.Argument(help="a run folder of `fishdip train` (or its parent, for several "
                                        "methods)")],
    decoder: Annotated[str, typer.Option(help="fishdip or tanl")] = "tanl",
    data_dir: Annotated[Optional[str], typer.Option(help="where the data is now, if not where the run "
                                                    "read it")] = None,
    output: Annotated[Optional[Path], typer.Option(help="also write the metrics JSON here")] = None,
) -> None:
    """Decode a run's stored generations again with another decoder and score them (no model needed)."""
    from fishdip.io import write_json_atomic
    from fishdip.report import comparison_table
    from fishdip.training.rescore import rescore_run, run_folders

    try:
        results = {folder.name: rescore_run(folder, decoder, data_dir) for folder in run_folders(run)}
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    if output:
        write_json_atomic(output, results)
    typer.echo(f"decoder: {decoder} (scores x100)")
    typer.echo(comparison_table(results, times=False))


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks, the way the CoNLL-style corpora split them."""
    return re.findall(r"\w+(?:[-'.]\w+)*|[^\w\s]", text)


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Option(help="a model folder written by `fishdip train`")],
    text: Annotated[Optional[list[str]], typer.Argument(help="sentences to annotate")] = None,
    input: Annotated[Optional[Path], typer.Option(help="file with one sentence per line ('-' = stdin)")] = None,
    batch_size: Annotated[int, typer.Option(help="sentences per generation batch")] = 16,
) -> None:
    """Annotate raw sentences; prints one JSON object per sentence."""
    from fishdip.evaluation.predict import predict
    from fishdip.formats.entity_relation import Example

    lines = list(text or [])
    if input is not None:
        lines += (sys.stdin.read() if str(input) == "-" else input.read_text(encoding="utf-8")).splitlines()
    lines = [line for line in lines if line.strip()]
    if not lines:
        _fail(ValueError("give sentences as arguments or with --input"))
    try:
        loaded, task_obj, max_length = _load_trained(model, None, None)
        if task_obj.family not in ("joint_er", "ner"):
            raise FishdipError(f"predict annotates raw sentences for entity tasks (joint_er, ner); {model} was "
                               f"trained for {task_obj.family}: use `fishdip evaluate` on a data file")
    except (FishdipError, ValueError) as exc:
        _fail(exc)
    examples = [Example(tokenize(line)) for line in lines]
    texts, decoded = predict(loaded, task_obj, examples, batch_size, max_length, progress=False)
    for line, ex, generated, pred in zip(lines, examples, texts, decoded):
        typer.echo(json.dumps({"input": line, "tokens": ex.tokens, "generated": generated,
                               **task_obj.to_json(ex.tokens, pred.entities, pred.relations),
                               "errors": dict(pred.errors)}, ensure_ascii=False))


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


def main() -> None:  # pragma: no cover
    app()
