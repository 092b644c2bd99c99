"""Configuration dataclasses: the one description of every option.

Each field carries its help text and its allowed values in ``metadata``; the CLI builds its
options from these fields (``cli.py``), ``validate`` checks them, and runs save them. A bad value
raises ``ConfigError`` with one line naming the option, the value and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from fishdip.data.datasets import DATASETS
from fishdip.errors import FishdipError
from fishdip.sparse.choices import DROPOUT_MODES, FISHER_KINDS, REFRESH_PHASES
from fishdip.training.methods import METHODS
from fishdip.training.rundir import RENAMED, default_output_dir

OPTIMIZERS = ("adamw", "adafactor")
DECODER_NAMES = ("fishdip", "tanl")  # formats/decoders.py
RC_SCORES = ("sum", "mean")
SAVE_MODES = ("auto", "delta", "adapter", "full", "none")
PAPER_LR = 1e-2  # the FISH-DIP reference's Adafactor learning rate
RECIPES = ("default", "paper", "paper-v1")
# what each reference recipe fixes. paper: the FISH-DIP reference's optimizer, sample ranking, refresh
# phase and dropout pattern; paper-v1: what `paper` meant before (ranking always in train mode, Fisher
# always in eval mode, refresh after the step), kept so that runs made with it stay reproducible.
RECIPE_SETTINGS = {
    "paper": {"optimizer": "adafactor", "weight_decay": 0.0, "rank_by": "sum", "rank_mode": "reference",
              "fisher_mode": "reference", "refresh_phase": "before", "loss_positions": "padded"},
    "paper-v1": {"optimizer": "adafactor", "weight_decay": 0.0, "rank_by": "sum", "rank_mode": "train",
                 "fisher_mode": "eval", "refresh_phase": "after", "loss_positions": "target"},
}


# which methods and task families read an option (field metadata ``used_by`` / ``family``)
SPARSE = ("fish", "fish-dip", "random", "random-dip")
REFRESHED = ("fish-dip", "random-dip")
FISHER = ("fish", "fish-dip")
FEW_SHOT = ("fewshot_rc",)


class ConfigError(FishdipError, ValueError):
    """An option has a value it cannot take."""


def _f(default, help: str, *, min=None, max=None, above=None, choices=None, cli: str | None = None,
       used_by: tuple[str, ...] | None = None, family: tuple[str, ...] | None = None):
    """A config field: ``min``/``max`` inclusive bounds, ``above`` an exclusive lower bound,
    ``choices`` the allowed values, ``cli`` the option's name if not the field's; ``used_by`` the
    methods and ``family`` the task families that read it (a value given for none of them is an
    option without effect: ``unused_options``)."""
    meta = {"help": help, "min": min, "max": max, "above": above, "choices": choices, "cli": cli,
            "used_by": used_by, "family": family}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


def option_name(f) -> str:
    return "--" + f.metadata.get("cli", f.name).replace("_", "-")


def allowed(f) -> str:
    """What a field accepts, in words (for help texts and error messages)."""
    m = f.metadata
    if "choices" in m:
        return "one of " + ", ".join(map(str, m["choices"]))
    parts = []
    if "above" in m:
        parts.append(f"> {m['above']}")
    if "min" in m:
        parts.append(f">= {m['min']}")
    if "max" in m:
        parts.append(f"<= {m['max']}")
    return " and ".join(parts)


# a field's annotation -> the Python types its value may have (an int is a float too; a bool is no number)
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list[int]": (list,)}


def _type_error(f, value) -> str | None:
    """What is wrong with the type of ``value`` for field ``f`` (grid files and the Python API pass
    values as written, e.g. epochs = "3"), or None."""
    names = [t.strip() for t in str(f.type).split("|") if t.strip() != "None"]
    kinds = tuple(k for n in names for k in _TYPES.get(n, (object,)))
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
                "list[int]": "a list of episode numbers"}.get(names[0], names[0]) if names else None
    if names == ["list[int]"] and not all(isinstance(e, int) and not isinstance(e, bool) for e in value):
        return "a list of whole episode numbers"
    return None


def check_fields(obj, skip: tuple[str, ...] = ()) -> None:
    """Every field of a config dataclass against its type and metadata; None is allowed where it is
    the default."""
    for f in fields(obj):
        value, m = getattr(obj, f.name), f.metadata
        if f.name in skip or (value is None and f.default is None):
            continue
        wrong = _type_error(f, value) if f.name != "train" else None
        if wrong:
            raise ConfigError(f"{option_name(f)} {value!r}: must be {wrong}")
        bad = False
        if "choices" in m:
            bad = value not in m["choices"]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = (isinstance(value, float) and not math.isfinite(value)) or \
                  ("min" in m and value < m["min"]) or ("max" in m and value > m["max"]) or \
                  ("above" in m and value <= m["above"])
        if bad:
            raise ConfigError(f"{option_name(f)} {value!r}: must be {allowed(f)}")


# options renamed since an earlier version: old field name -> new (old run folders still read)
RENAMED_OPTIONS = {old.split(".")[-1]: new.split(".")[-1] for old, new in RENAMED.items()}


@dataclass
class TrainConfig:
    method: str = _f("fish-dip", "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()),
                     choices=tuple(METHODS))
    epochs: int = _f(3, "passes over the training subset", min=1)
    max_steps: int | None = _f(None, "train for exactly this many optimizer steps instead of --epochs (the data "
                               "is cycled in reshuffled epochs), so methods compare at equal compute", min=1)
    stop_loss: float | None = _f(None, "stop once the training loss has stayed below this for 20 steps in a row "
                                 "(the reference uses 1e-6); off by default", above=0)
    batch_size: int = _f(8, "sentences per micro-batch", min=1)
    grad_accum_steps: int = _f(1, "micro-batches per optimizer step", min=1)
    lr: float | None = _f(None, "peak learning rate, linear decay to 0 "
                          "(default: 1e-2 under --recipe paper, which fish-dip runs by default; else 1e-4 for full, "
                          "1e-3 for the other masks, 5e-4 for lora, 3e-3 for ia3)", above=0, max=10)
    warmup_ratio: float = _f(0.0, "fraction of optimizer steps with linear warm-up", min=0, max=1)
    optimizer: str = _f("adamw", "adamw or adafactor (with --recipe default; fish-dip runs --recipe "
                     "paper unless told otherwise, which uses Adafactor)", choices=OPTIMIZERS)
    weight_decay: float = _f(0.0, "decoupled weight decay (never touches masked entries; "
                          "--recipe paper: 0)", min=0, max=1)
    max_grad_norm: float = _f(1.0, "gradient clipping over the trainable entries; 0 disables", min=0)
    max_length: int = _f(256, "maximum tokens of a source and of a target", min=8, max=100_000)
    density: float = _f(0.01, "fraction of parameter entries that learn, e.g. 0.01 = 1 % (sparse methods)",
                        above=0, max=1, used_by=SPARSE)
    refresh_steps: int = _f(100, "fish-dip: recompute the mask every N optimizer steps", min=1, used_by=REFRESHED)
    regressing_samples: int | None = _f(None, "fish-dip: samples the mask is computed on "
                                        "(default: 10 % of batches per epoch, clamped to 3..25)", min=1,
                                        used_by=("fish-dip",))
    fisher: str = _f("square", "Fisher score per entry: sum of squared (square) or absolute (abs) "
                     "per-sample gradients", choices=FISHER_KINDS, used_by=FISHER)
    lora_rank: int = _f(8, "lora: rank of the adapters", min=1, max=4096, used_by=("lora",))
    lora_alpha: float = _f(16.0, "lora: scaling numerator (the update is scaled by alpha / rank)", above=0,
                           used_by=("lora",))
    lora_dropout: float = _f(0.05, "lora: dropout on the adapters' input", min=0, max=1, used_by=("lora",))
    lora_targets: str | None = _f(None, "lora: comma list of module names to adapt (default: peft's choice "
                                  "for the architecture, e.g. q,v for T5, q_proj,v_proj for Llama-style)",
                                  used_by=("lora",))
    icl_context: int = _f(1024, "icl: tokens of demonstrations in front of each sentence", min=16, used_by=("icl",))
    icl_selection: str = _f("tfidf", "icl: demonstrations most similar to the sentence (tfidf: cosine of TF-IDF "
                            "word vectors) or in a random order seeded by the episode", choices=("tfidf", "random"),
                            used_by=("icl",))
    rank_by: str = _f("mean", "fish-dip: rank samples by their mean token loss, or by the summed loss (the "
                      "reference's effect: longer targets rank higher; what --recipe paper uses)",
                      choices=("mean", "sum"), used_by=("fish-dip",))
    rank_mode: str = _f("eval", "fish-dip: rank samples without dropout (eval), with it (train), or as the "
                        "reference (reference: eval for the first mask, the model as loaded, train for every "
                        "refresh; what --recipe paper uses)", choices=DROPOUT_MODES, used_by=("fish-dip",))
    fisher_mode: str = _f("eval", "sparse methods: score Fisher information without dropout (eval), with it "
                          "(train), or as the reference (reference: eval for the first mask, train for every "
                          "refresh; what --recipe paper uses)", choices=DROPOUT_MODES, used_by=FISHER)
    refresh_phase: str = _f("after", "fish-dip: recompute the mask after optimizer steps N, 2N, ... (after), or "
                            "before them, i.e. after N-1, 2N-1, ... steps (before: the reference's phase; what "
                            "--recipe paper uses)", choices=REFRESH_PHASES, used_by=REFRESHED)
    loss_positions: str = _f("target", "encoder-decoders: the loss over the real target tokens (target), or the "
                             "reference's (padded: TANL pads labels to --max-length with the pad token, so the loss "
                             "averages over all those positions, pad predictions included; for training, ranking "
                             "and Fisher scores; what --recipe paper uses). Decoder-only models have no such "
                             "padding: paper keeps target for them", choices=("target", "padded"))
    fish_samples: int = _f(128, "fish: training samples the one fixed mask is computed on", min=1, used_by=("fish",))
    seed: int = _f(0, "added to the episode number: episode i seeds its shuffling, dropout, random masks and "
                   "LoRA initialisation with seed + i (its training subset depends on i alone)", min=0)
    recipe: str | None = _f(None, "default: --optimizer, --weight-decay, --rank-by, --rank-mode, --fisher-mode and "
                            "--refresh-phase as given; paper: the FISH-DIP reference's settings, which fix them: "
                            "transformers' Adafactor (scale_parameter, no relative step, no momentum, no weight "
                            "decay; for sparse methods a sparse Adafactor that reproduces its update on masked "
                            "dense gradients), lr 1e-2 unless --lr, ranking by summed loss, ranking and Fisher "
                            "in eval mode for the first mask and in train mode for refreshes, refresh before "
                            "steps N, 2N, ...; paper-v1: the same but ranking always in train mode, Fisher always "
                            "in eval mode, refresh after the step (what `paper` meant until December 2026; "
                            "docs/PROTOCOL.md). Not given: the method's own, paper for fish-dip, default for "
                            "the rest", choices=RECIPES)
    precision: str = _f("fp32", "fp32; bf16 or fp16: matrix products in that precision (autocast), float32 "
                        "master weights and optimizer state; fp16 (with loss scaling) on CUDA only; auto: bf16 "
                        "where the device runs it natively (CUDA with bf16, CPU with AVX-512 bf16 / AMX), "
                        "else fp32", choices=("auto", "fp32", "bf16", "fp16"))

    def validate(self) -> None:
        check_fields(self)
        recipe = self.effective_recipe
        settings = RECIPE_SETTINGS.get(recipe, {})
        for f in (f for f in fields(self) if f.name in settings):
            fixed, value = settings[f.name], getattr(self, f.name)
            if value not in (fixed, f.default):  # an explicit choice the recipe would silently replace
                why = (f"--recipe {recipe}" if self.recipe
                       else f"{self.method} runs --recipe {recipe} unless told otherwise")
                raise ConfigError(f"{option_name(f)} {value!r}: {why}, which sets it to {fixed!r}; "
                                  "add --recipe default to choose it")

    @property
    def effective_recipe(self) -> str:
        """--recipe, else the method's own (methods.py)."""
        return self.recipe or METHODS[self.method].recipe

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return PAPER_LR if self.effective_recipe in RECIPE_SETTINGS else METHODS[self.method].default_lr

    def resolved(self) -> TrainConfig:
        """The options the trainer uses: the recipe in effect, and the settings it fixes."""
        recipe = self.effective_recipe
        return replace(self, recipe=recipe, **RECIPE_SETTINGS.get(recipe, {}))

    def to_dict(self) -> dict:
        return {**asdict(self), "recipe": self.effective_recipe, "effective_lr": self.effective_lr}


@dataclass
class ExperimentConfig:
    task: str = _f("conll04", "dataset / task name (`fishdip tasks` lists them)", choices=tuple(DATASETS))
    model: str = _f("embedded", "hub name, local model folder, or 'embedded' (SmolLM2-135M-Instruct, offline)")
    data_dir: str | None = _f(None, "folder holding <task>/ (else $FISHDIP_DATA_DIR, else the cache)")
    fold: int = _f(0, "cross-validation fold, for datasets that ship folds (ade)", min=0)
    train_fraction: float | None = _f(None, "use this fraction of the training split", above=0, max=1)
    train_size: int | None = _f(None, "use this many training sentences", min=1)
    episodes: list[int] = field(default_factory=lambda: [1], metadata={
        "help": "episode numbers, ascending, e.g. 1-3 or 1,4,7; episode i samples its subset with seed i"})
    subset_sampling: str = _f("random", "how episode i draws its training subset: random (a seeded sample, "
                              "sorted) or tanl (TANL's rule, which FISH-DIP's reference uses: random.seed(i), "
                              "shuffle all indices, take the first round(fraction x N))", choices=("random", "tanl"))
    strict_tags: bool = _f(False, "CoNLL files: an invalid tag transition is an error (file, line) "
                           "instead of being repaired like conlleval")
    eval_split: str = _f("test", "dev or test", choices=("dev", "test"))
    n_way: int = _f(5, "few-shot tasks: relations per episode", min=2, family=FEW_SHOT)
    k_shot: int = _f(1, "few-shot tasks: training instances per relation", min=1, family=FEW_SHOT)
    n_queries: int = _f(5, "few-shot tasks: query instances per relation", min=1, cli="queries", family=FEW_SHOT)
    meta_train: str | None = _f(None, "few-shot tasks: before the episodes, fine-tune on a FewRel-format file "
                                "of other relations (TANL, FISH-DIP), or 'holdout': half of the episode "
                                "file's relations (seeded split), episodes drawn from the other half",
                                family=FEW_SHOT)
    meta_train_size: int | None = _f(400, "meta-training instances, spread evenly over its relations", min=1,
                                     family=FEW_SHOT)
    meta_train_epochs: int = _f(1, "meta-training epochs (full fine-tuning, lr 1e-4)", min=1, family=FEW_SHOT)
    eval_limit: int | None = _f(None, "evaluate on the first N sentences only (few-shot: N queries, a "
                                "multiple of --n-way so every relation keeps its share)", min=1)
    eval_every: int | None = _f(None, "learning curve: score the model every N optimizer steps during training "
                                "on --curve-split (first --curve-limit sentences), recorded per episode in "
                                "results.json; off by default", min=1)
    curve_split: str = _f("dev", "learning curve: the split it is scored on (a test-split curve describes "
                          "training dynamics only; nothing is chosen on it)", choices=("dev", "test"))
    curve_limit: int | None = _f(100, "learning curve: the first N sentences of --curve-split (none: all)", min=1)
    checkpoint_every: float = _f(600.0, "seconds between saves of a running episode's training state, so that "
                                 "a stopped run continues where it was (<output-dir>/checkpoint/, or "
                                 "$FISHDIP_CHECKPOINT_DIR; removed when the episode finishes); 0: every step",
                                 min=0)
    decoder: str = _f("fishdip", "how generated text becomes spans: fishdip (word alignment that never "
                      "stretches a span) or tanl (TANL's published rules, for comparable numbers)",
                      choices=DECODER_NAMES)
    rc_score: str = _f("sum", "few-shot relation classification: rank candidate relations by the summed "
                       "(TANL) or the mean token loss of their output", choices=RC_SCORES, family=FEW_SHOT)
    eval_batch_size: int = _f(16, "sentences per generation batch", min=1)
    num_beams: int = _f(1, "1 = greedy decoding", min=1, max=64)
    output_dir: str = _f("runs/run", "where config, results, predictions and models go (the CLI's default: "
                         "a new folder runs/<task>-<methods>-<date>-<time> per run); a rerun into the same "
                         "folder resumes it")
    save: str = _f("auto", "how each episode's model is saved: delta (only the entries the sparse masks "
                   "touched, a few % of the model, loaded onto the base model; the default for sparse methods), "
                   "adapter (lora, ia3: the peft adapter; their default), full (a complete model folder; the "
                   "default for full fine-tuning), or none", choices=SAVE_MODES)
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, mps ...")
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, known_task: bool = True) -> None:
        """Values on their own (ranges, choices, combinations); paths and devices: ``check_environment``.
        ``known_task=False``: the task is given as an object (in-memory examples), not by name."""
        check_fields(self, skip=() if known_task else ("task",))
        self.train.validate()
        if self.train_fraction is not None and self.train_size is not None:
            raise ConfigError("--train-fraction and --train-size: give one of them, not both")
        if not self.episodes or any(e < 0 for e in self.episodes) or \
                any(b <= a for a, b in zip(self.episodes, self.episodes[1:])):
            raise ConfigError(f"--episodes {_episode_text(self.episodes)}: must be ascending episode numbers "
                              f">= 0 without repeats, e.g. 1-3 or 1,4,7")
        few_shot = known_task and DATASETS[self.task].family == "fewshot_rc"
        if few_shot and self.eval_limit is not None and self.eval_limit % self.n_way:
            raise ConfigError(f"--eval-limit {self.eval_limit}: few-shot queries come in groups of --n-way "
                              f"{self.n_way}; use a multiple of {self.n_way} so every relation keeps its share")
        method = METHODS[self.train.method]
        if self.save == "delta" and not method.sparse:
            raise ConfigError(f"--save delta: {method.name} is not a sparse method; use --save "
                              f"{method.saves} (or auto)")
        if not method.trains and self.save not in ("auto", "none"):
            raise ConfigError(f"--save {self.save}: {method.name} trains nothing, so there is no model to save")
        if not method.trains and known_task and DATASETS[self.task].family == "fewshot_rc":
            raise ConfigError(f"--method {method.name}: few-shot relation classification scores candidates by "
                              "loss, not by generation; in-context learning is for the generation tasks")
        if self.save == "adapter" and method.wrap is None:
            raise ConfigError(f"--save adapter: {method.name} trains no adapter; use --save {method.saves} (or auto)")
        if self.subset_sampling != "random" and few_shot:
            raise ConfigError(f"--subset-sampling {self.subset_sampling}: few-shot episodes are drawn as N-way "
                              "K-shot samples, not as a fraction of a split")
        if self.eval_every is not None and few_shot:
            raise ConfigError("--eval-every: learning curves are for the generation tasks; few-shot episodes "
                              "have no fixed split to score on")
        if self.eval_every is not None and not method.trains:
            raise ConfigError(f"--eval-every: {method.name} trains nothing, so it has no learning curve")
        if self.meta_train is not None and not few_shot:
            raise ConfigError(f"--meta-train: only for few-shot tasks (fewrel, fewrel_pubmed), not {self.task}")

    @property
    def save_mode(self) -> str:
        """``save`` with ``auto`` resolved: delta for sparse methods, full otherwise."""
        if self.save != "auto":
            return self.save
        return METHODS[self.train.method].saves

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """The config a run recorded in its config.json (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"train"}
        train_known = {f.name for f in fields(TrainConfig)}
        train_data = {RENAMED_OPTIONS.get(k, k): v for k, v in data.get("train", {}).items()}
        train = TrainConfig(**{k: v for k, v in train_data.items() if k in train_known})
        return cls(**{k: v for k, v in data.items() if k in known}, train=train)


def configs_from_options(options: dict, where: str = "") -> tuple[ExperimentConfig, list[str]]:
    """The config of a run from option names and values (``fishdip train``'s fields; ``method``: one
    name, a comma list or a list), and the methods. ``where`` names the source in errors."""
    options = dict(options)
    exp_fields = {f.name for f in fields(ExperimentConfig)} - {"train"}
    train_fields = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - exp_fields - train_fields
    if unknown:
        renamed = "".join(f" ({old} is now called {RENAMED_OPTIONS[old]})"
                          for old in sorted(unknown & set(RENAMED_OPTIONS)))
        raise ConfigError(f"{where}unknown option(s) {', '.join(sorted(unknown))}{renamed}; see `fishdip train --help`")
    methods = options.pop("method", "fish-dip")
    methods = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    check_methods(methods)
    train_cfg = TrainConfig(**{k: v for k, v in options.items() if k in train_fields}, method=methods[0])
    exp = {k: v for k, v in options.items() if k in exp_fields}
    exp.setdefault("output_dir", default_output_dir(exp.get("task", "conll04"), methods))
    return ExperimentConfig(**exp, train=train_cfg), methods


def unused_options(cfg: ExperimentConfig, methods: list[str], family: str | None) -> list[str]:
    """Options given a value that none of ``methods`` reads, or that the task's ``family`` does not
    (None: a task held in memory), e.g. ``--n-way`` on CoNLL04 or ``--lora-rank`` with fish-dip."""
    out = []
    for obj in (cfg, cfg.train):
        for f in fields(obj):
            m, value = f.metadata, getattr(obj, f.name)
            if value == f.default:
                continue
            if "used_by" in m and not set(methods) & set(m["used_by"]):
                out.append(f"{option_name(f)} (read by {', '.join(m['used_by'])} only)")
            elif "family" in m and family is not None and family not in m["family"]:
                out.append(f"{option_name(f)} (for {', '.join(m['family'])} tasks only)")
    if cfg.fold != 0 and cfg.task in DATASETS and family is not None and not DATASETS[cfg.task].folds:
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
    if name == "embedded":
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
    if cfg.meta_train not in (None, "holdout") and not Path(cfg.meta_train).is_file():
        raise ConfigError(f"--meta-train {cfg.meta_train}: no such file (or 'holdout')")
