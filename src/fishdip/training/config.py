"""Configuration dataclasses; every field's help text is shown by the CLI and saved with runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

METHODS = ("full", "fish", "fish-dip", "random")
# Sparse masks train 1 % of the entries and need a larger step than full fine-tuning
# (Sung et al. 2021 make the same observation for FISH masks); used when --lr is not given.
DEFAULT_LR = {"full": 1e-4, "fish": 1e-3, "fish-dip": 1e-3, "random": 1e-3}
OPTIMIZERS = ("adamw", "adafactor")
DECODER_NAMES = ("fishdip", "tanl")  # formats/decoders.py
RC_SCORES = ("sum", "mean")


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    method: str = _f("fish-dip", "full: all parameters learn; fish: one Fisher mask before training; "
                     "fish-dip: Fisher mask refreshed on the most regressing samples; random: random mask")
    epochs: int = _f(3, "passes over the training subset")
    batch_size: int = _f(8, "sentences per micro-batch")
    grad_accum_steps: int = _f(1, "micro-batches per optimizer step")
    lr: float | None = _f(None, "peak learning rate, linear decay to 0 "
                          "(default: 1e-4 for full, 1e-3 for the sparse methods)")
    warmup_ratio: float = _f(0.0, "fraction of optimizer steps with linear warm-up")
    optimizer: str = _f("adamw", "adamw or adafactor")
    weight_decay: float = _f(0.0, "decoupled weight decay (never touches masked entries)")
    max_grad_norm: float = _f(1.0, "gradient clipping over the trainable entries; 0 disables")
    max_length: int = _f(256, "maximum tokens of a source and of a target")
    sparsity: float = _f(0.01, "fraction of parameter entries that learn (sparse methods)")
    refresh_steps: int = _f(100, "fish-dip: recompute the mask every N optimizer steps")
    regressing_samples: int | None = _f(None, "fish-dip: samples the mask is computed on "
                                        "(default: 10 % of batches per epoch, clamped to 3..25)")
    fisher: str = _f("square", "Fisher score per entry: sum of squared (square) or absolute (abs) "
                     "per-sample gradients")
    fish_samples: int = _f(128, "fish: training samples the one fixed mask is computed on")
    seed: int = _f(0, "seed for shuffling, dropout and random masks")

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.fisher not in ("square", "abs"):
            raise ValueError(f"--fisher must be square or abs, got {self.fisher!r}")
        if not 0 < self.sparsity <= 1:
            raise ValueError(f"--sparsity must be in (0, 1], got {self.sparsity}")
        for name in ("epochs", "batch_size", "grad_accum_steps", "refresh_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def to_dict(self) -> dict:
        return {**asdict(self), "effective_lr": self.effective_lr}


@dataclass
class ExperimentConfig:
    task: str = _f("conll04", "dataset / task name")
    model: str = _f("embedded", "hub name, local path, or 'embedded' (SmolLM2-135M-Instruct, offline)")
    data_dir: str | None = _f(None, "folder holding <task>/ (else $FISHDIP_DATA_DIR, else the cache)")
    fold: int = _f(0, "cross-validation fold, for datasets that ship folds (ade)")
    train_fraction: float | None = _f(None, "use this fraction of the training split")
    train_size: int | None = _f(None, "use this many training sentences")
    episodes: list[int] = field(default_factory=lambda: [1], metadata={"help": "episode numbers; "
                                "episode i samples its subset with seed i"})
    strict_tags: bool = _f(False, "CoNLL files: an invalid tag transition is an error (file, line) "
                           "instead of being repaired like conlleval")
    eval_split: str = _f("test", "dev or test")
    n_way: int = _f(5, "few-shot tasks: relations per episode")
    k_shot: int = _f(1, "few-shot tasks: training instances per relation")
    n_queries: int = _f(5, "few-shot tasks: query instances per relation")
    meta_train: str | None = _f(None, "few-shot tasks: before the episodes, fine-tune on a FewRel-format file "
                                "of other relations (TANL, FISH-DIP), or 'holdout': half of the episode "
                                "file's relations (seeded split), episodes drawn from the other half")
    meta_train_size: int | None = _f(400, "meta-training instances, spread evenly over its relations "
                                     "(None = all)")
    meta_train_epochs: int = _f(1, "meta-training epochs (full fine-tuning, lr 1e-4)")
    eval_limit: int | None = _f(None, "evaluate on the first N sentences only")
    decoder: str = _f("fishdip", "how generated text becomes spans: fishdip (word alignment that never "
                      "stretches a span; default) or tanl (TANL's published rules, for comparable numbers)")
    rc_score: str = _f("sum", "few-shot relation classification: rank candidate relations by the summed "
                       "(TANL) or the mean token loss of their output")
    eval_batch_size: int = _f(16, "sentences per generation batch")
    num_beams: int = _f(1, "1 = greedy decoding")
    output_dir: str = _f("runs/run", "where config, results, predictions and models go (the CLI's default: "
                         "a new folder runs/<task>-<methods>-<date>-<time> per run); a rerun into the same "
                         "folder resumes it")
    save_model: bool = _f(True, "save the trained model(s)")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, mps ...")
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.train.validate()
        if self.decoder not in DECODER_NAMES:
            raise ValueError(f"--decoder must be one of {', '.join(DECODER_NAMES)}, got {self.decoder!r}")
        if self.rc_score not in RC_SCORES:
            raise ValueError(f"--rc-score must be one of {', '.join(RC_SCORES)}, got {self.rc_score!r}")
        if self.meta_train_size is not None and self.meta_train_size < 1:
            raise ValueError(f"--meta-train-size must be >= 1, got {self.meta_train_size}")
        if self.meta_train_epochs < 1:
            raise ValueError(f"--meta-train-epochs must be >= 1, got {self.meta_train_epochs}")

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """The config a run recorded in its config.json (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"train"}
        train_known = {f.name for f in fields(TrainConfig)}
        train = TrainConfig(**{k: v for k, v in data.get("train", {}).items() if k in train_known})
        return cls(**{k: v for k, v in data.items() if k in known}, train=train)
