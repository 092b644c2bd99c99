"""The training options (``TrainConfig``): the one description of how a model is trained.

Each field carries its help text and its allowed values in ``metadata`` (options.py); the CLI
builds its options from these fields, ``validate`` checks them, and runs save them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from fishdip.evaluation.icl import SELECTIONS
from fishdip.options import ConfigError, check_fields, option, option_name, option_of
from fishdip.sparse.choices import DROPOUT_MODES, FISHER_KINDS, GATE_MIN_LOSS, REFRESH_GATES, REFRESH_PHASES
from fishdip.tasks.options import GenerationOptions
from fishdip.training.methods import METHODS, Method
from fishdip.training.precision import PRECISIONS

OPTIMIZERS = ("adamw", "adafactor")
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


@dataclass
class TrainConfig:
    method: str = option("fish-dip", "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()),
                         choices=tuple(METHODS))
    epochs: int = option(3, "passes over the training subset", min=1)
    max_steps: int | None = option(None, "train for exactly this many optimizer steps instead of --epochs (the data "
                                   "is cycled in reshuffled epochs), so methods compare at equal compute", min=1)
    halt_step: int | None = option(None, "end training after this many optimizer steps while the learning-rate "
                                   "schedule and the mask refreshes stay planned for the whole run (--epochs or "
                                   "--max-steps): the model a long run has at that step, e.g. to test it", min=1)
    stop_loss: float | None = option(None, "stop once the training loss has stayed below this for 20 steps in a row "
                                     "(the reference uses 1e-6); off by default", above=0)
    batch_size: int = option(8, "sentences per micro-batch", min=1)
    grad_accum_steps: int = option(1, "micro-batches per optimizer step", min=1)
    lr: float | None = option(None, "peak learning rate, linear decay to 0 (default: 1e-2 under --recipe paper, "
                              "which fish-dip runs by default; else 1e-4 for full, 1e-3 for the other masks, 5e-4 "
                              "for lora, 3e-3 for ia3)", above=0, max=10)
    warmup_ratio: float = option(0.0, "fraction of optimizer steps with linear warm-up", min=0, max=1)
    optimizer: str = option("adamw", "adamw or adafactor (with --recipe default; fish-dip runs --recipe "
                     "paper unless told otherwise, which uses Adafactor)", choices=OPTIMIZERS)
    weight_decay: float = option(0.0, "decoupled weight decay (never touches masked entries; "
                          "--recipe paper: 0)", min=0, max=1)
    max_grad_norm: float = option(1.0, "gradient clipping over the trainable entries; 0 disables", min=0)
    max_length: int = option_of(GenerationOptions, "max_length")
    density: float = option(0.01, "fraction of parameter entries that learn, e.g. 0.01 = 1 % (sparse methods)",
                            above=0, max=1, used_by=SPARSE)
    refresh_steps: int = option(100, "fish-dip: recompute the mask every N optimizer steps", min=1, used_by=REFRESHED)
    regressing_samples: int | None = option(None, "fish-dip: samples the mask is computed on "
                                            "(default: 10 % of batches per epoch, clamped to 3..25)", min=1,
                                            used_by=("fish-dip",))
    fisher: str = option("square", "Fisher score per entry: sum of squared (square) or absolute (abs) "
                         "per-sample gradients", choices=FISHER_KINDS, used_by=FISHER)
    lora_rank: int = option(8, "lora: rank of the adapters", min=1, max=4096, used_by=("lora",))
    lora_alpha: float = option(16.0, "lora: scaling numerator (the update is scaled by alpha / rank)", above=0,
                               used_by=("lora",))
    lora_dropout: float = option(0.05, "lora: dropout on the adapters' input", min=0, max=1, used_by=("lora",))
    lora_targets: str | None = option(None, "lora: comma list of module names to adapt (default: peft's choice "
                                      "for the architecture, e.g. q,v for T5, q_proj,v_proj for Llama-style)",
                                      used_by=("lora",))
    icl_context: int = option(1024, "icl: tokens of demonstrations in front of each sentence", min=16, used_by=("icl",))
    icl_selection: str = option("tfidf", "icl: demonstrations most similar to the sentence (tfidf: cosine of TF-IDF "
                                "word vectors) or in a random order seeded by the episode", choices=SELECTIONS,
                                used_by=("icl",))
    rank_by: str = option("mean", "fish-dip: rank samples by their mean token loss, or by the summed loss (the "
                          "reference's effect: longer targets rank higher; what --recipe paper uses)",
                          choices=("mean", "sum"), used_by=("fish-dip",))
    refresh_gate: str = option("none", "fish-dip, at each scheduled refresh: none (recompute the mask: the paper), "
                               "regressing (rank the samples as always; recompute only if some sample's mean "
                               f"per-token loss is above {GATE_MIN_LOSS:g} and higher than at the previous ranking, "
                               "else keep the mask and record the skip), never (keep the first mask for the whole "
                               "run: the control that tells a static Fisher mask's share from the refreshes')",
                               choices=REFRESH_GATES,
                               used_by=("fish-dip",))
    rank_mode: str = option("eval", "fish-dip: rank samples without dropout (eval), with it (train), or as the "
                            "reference (reference: eval for the first mask, the model as loaded, train for every "
                            "refresh; what --recipe paper uses)", choices=DROPOUT_MODES, used_by=("fish-dip",))
    fisher_mode: str = option("eval", "sparse methods: score Fisher information without dropout (eval), with it "
                              "(train), or as the reference (reference: eval for the first mask, train for every "
                              "refresh; what --recipe paper uses)", choices=DROPOUT_MODES, used_by=FISHER)
    refresh_phase: str = option("after", "fish-dip: recompute the mask after optimizer steps N, 2N, ... (after), or "
                                "before them, i.e. after N-1, 2N-1, ... steps (before: the reference's phase; what "
                                "--recipe paper uses)", choices=REFRESH_PHASES, used_by=REFRESHED)
    loss_positions: str = option("target", "encoder-decoders: the loss over the real target tokens (target), or "
                                 "the reference's (padded: TANL pads labels to --max-length with the pad token, so the "
                                 "loss averages over all those positions, pad predictions included; for training, "
                                 "ranking and Fisher scores; what --recipe paper uses). Decoder-only models have no "
                                 "such padding: paper keeps target for them", choices=("target", "padded"))
    fish_samples: int = option(128, "fish: training samples the one fixed mask is computed on", min=1,
                               used_by=("fish",))
    seed: int = option(0, "added to the episode number: episode i seeds its shuffling, dropout, random masks and "
                       "LoRA initialisation with seed + i (its training subset depends on i alone)", min=0)
    recipe: str | None = option(None, "default: --optimizer, --weight-decay, --rank-by, --rank-mode, --fisher-mode and "
                                "--refresh-phase as given; paper: the FISH-DIP reference's settings, which fix them: "
                                "transformers' Adafactor (scale_parameter, no relative step, no momentum, no weight "
                                "decay; for sparse methods a sparse Adafactor that reproduces its update on masked "
                                "dense gradients), lr 1e-2 unless --lr, ranking by summed loss, ranking and Fisher "
                                "in eval mode for the first mask and in train mode for refreshes, refresh before "
                                "steps N, 2N, ...; paper-v1: the same but ranking always in train mode, Fisher always "
                                "in eval mode, refresh after the step (what `paper` meant until December 2026; "
                                "docs/PROTOCOL.md). Not given: the method's own, paper for fish-dip, default for "
                                "the rest", choices=RECIPES, older="default")
    precision: str = option("fp32", "fp32; bf16 or fp16: matrix products in that precision (autocast), float32 "
                            "master weights and optimizer state; fp16 (with loss scaling) on CUDA only; auto: bf16 "
                            "where the device runs it natively (CUDA with bf16, CPU with AVX-512 bf16 / AMX), "
                            "else fp32", choices=PRECISIONS)

    def __post_init__(self) -> None:
        self.validate()  # a config that exists is valid: nothing downstream checks it again

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
    def spec(self) -> Method:
        """The method's registry entry (training/methods.py)."""
        return METHODS[self.method]

    @property
    def effective_recipe(self) -> str:
        """--recipe, else the method's own (methods.py)."""
        return self.recipe or self.spec.recipe

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return PAPER_LR if self.effective_recipe in RECIPE_SETTINGS else self.spec.default_lr

    def resolved(self) -> TrainConfig:
        """The options the trainer uses: the recipe in effect, and the settings it fixes."""
        recipe = self.effective_recipe
        return replace(self, recipe=recipe, **RECIPE_SETTINGS.get(recipe, {}))

    def to_dict(self) -> dict:
        """What config.json records: the settings that run, i.e. with the recipe's fixed values (a
        paper run says rank_mode "reference", not the option's default that the recipe replaced)."""
        return {**asdict(self.resolved()), "effective_lr": self.effective_lr}
