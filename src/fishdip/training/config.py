"""The training options (``TrainConfig``): the one description of how a model is trained.

Each field carries its help text and its allowed values in ``metadata`` (options.py); the CLI
builds its options from these fields, ``validate`` checks them, and runs save them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from fishdip.evaluation.icl import SELECTIONS
from fishdip.options import ConfigError, check_fields, option, option_name, option_of
from fishdip.sparse.methods import SPARSE_METHODS, SparseConfig, SparseMethod
from fishdip.tasks.options import GenerationOptions
from fishdip.training.methods import LORA_VARIANTS, METHODS, Method
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


# which methods read an option (field metadata ``used_by``): derived from the registries' rows when
# checked, so that a method's row is all it takes (a method added later reads what its flags say)
def sparse_methods_where(rule: Callable[[SparseMethod], bool] = lambda m: True) -> Callable[[], tuple[str, ...]]:
    """The methods whose sparse engine row satisfies ``rule``, e.g. ``lambda m: m.refresh``."""
    return lambda: tuple(m.name for m in METHODS.values() if m.sparse and rule(SPARSE_METHODS[m.sparse_method]))


def _methods() -> tuple[str, ...]:
    return tuple(METHODS)


def _sparse(name: str, reads: Callable[[SparseMethod], bool] = lambda m: True, **changes):
    """Sparse option ``name`` as SparseConfig declares it, read by the sparse methods that ``reads``."""
    return option_of(SparseConfig, name, used_by=sparse_methods_where(reads), **changes)


@dataclass
class TrainConfig:
    method: str = option("fish-dip", "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()),
                         choices=_methods)
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
    group_by_length: bool = option(False, "cut each optimizer step's sentences into micro-batches of similar length "
                                   "(less padding; the same sentences and micro-batch sizes per step, so the same "
                                   "loss up to float summation order and dropout's draws); helps with "
                                   "--grad-accum-steps above 1")
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
    density: float = _sparse("density")
    refresh_steps: int = option_of(SparseConfig, "refresh_steps", help="fish-dip, random-dip, spiel: a new mask "
                                   "every N optimizer steps; lisa: new layers", used_by=lambda: tuple(
                                       m.name for m in METHODS.values() if m.refreshes))
    regressing_samples: int | None = _sparse("regressing_samples", lambda m: m.ranks)
    fisher: str = _sparse("fisher", lambda m: m.fisher)
    lora_rank: int = option(8, "lora: rank of the adapters", min=1, max=4096, used_by=("lora",))
    lora_alpha: float = option(16.0, "lora: scaling numerator (the update is scaled by alpha / rank)", above=0,
                               used_by=("lora",))
    lora_dropout: float = option(0.05, "lora: dropout on the adapters' input", min=0, max=1, used_by=("lora",))
    lora_targets: str | None = option(None, "lora: comma list of module names to adapt (default: peft's choice "
                                      "for the architecture, e.g. q,v for T5, q_proj,v_proj for Llama-style)",
                                      used_by=("lora",))
    lora_variant: str = option("lora", "lora: plain LoRA; dora (magnitude and direction learnt apart, Liu et al. "
                               "2024); rslora (scaled by alpha / sqrt(rank), Kalajdzievski 2023); pissa (initialised "
                               "from the weights' principal singular vectors, Meng et al. 2024; saved merged into "
                               "the weights, since it changes the base)", choices=tuple(LORA_VARIANTS),
                               used_by=("lora",))
    lisa_layers: int = option(2, "lisa: transformer layers that learn at a time (the LISA paper's default)", min=1,
                              used_by=("lisa",))
    icl_context: int = option(1024, "icl: tokens of demonstrations in front of each sentence", min=16, used_by=("icl",))
    icl_selection: str = option("tfidf", "icl: demonstrations most similar to the sentence (tfidf: cosine of TF-IDF "
                                "word vectors) or in a random order seeded by the episode", choices=SELECTIONS,
                                used_by=("icl",))
    rank_by: str = option("mean", "fish-dip: rank samples by their mean token loss, or by the summed loss (the "
                          "reference's effect: longer targets rank higher; what --recipe paper uses)",
                          choices=("mean", "sum"), used_by=sparse_methods_where(lambda m: m.ranks))
    refresh_gate: str = _sparse("refresh_gate", lambda m: m.ranks)
    rank_mode: str = _sparse("rank_mode", lambda m: m.ranks, default="eval")
    fisher_mode: str = _sparse("fisher_mode", lambda m: m.fisher, default="eval")
    refresh_phase: str = _sparse("refresh_phase", lambda m: m.refresh, default="after")
    loss_positions: str = option("target", "encoder-decoders: the loss over the real target tokens (target), or "
                                 "the reference's (padded: TANL pads labels to --max-length with the pad token, so the "
                                 "loss averages over all those positions, pad predictions included; for training, "
                                 "ranking and Fisher scores; what --recipe paper uses). Decoder-only models have no "
                                 "such padding: paper keeps target for them", choices=("target", "padded"))
    fish_samples: int = _sparse("fish_samples", lambda m: m.draws_samples)
    regrow_rate: float = _sparse("regrow_rate", lambda m: m.regrows)
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
        settings = RECIPE_SETTINGS.get(self.effective_recipe, {})
        for f in (f for f in fields(self) if f.name in settings):
            if getattr(self, f.name) != f.default:  # a default may be the recipe's to replace (check_given)
                self._refuse_replaced(f)
        if self.lora_targets is not None and not any(t.strip() for t in self.lora_targets.split(",")):
            raise ConfigError(f"--lora-targets {self.lora_targets!r}: names no module; leave it out for peft's "
                              "choice, or give a comma list such as q_proj,v_proj")

    def check_given(self, given: set[str]) -> None:
        """Refuse an option the user set (``given``: the names set on the command line, in the Python call
        or in a grid table) that the recipe would replace, also where it equals the default
        (``--recipe paper --optimizer adamw`` would otherwise train with Adafactor without a word)."""
        settings = RECIPE_SETTINGS.get(self.effective_recipe, {})
        for f in fields(self):
            if f.name in settings and f.name in given:
                self._refuse_replaced(f)

    def _refuse_replaced(self, f) -> None:
        recipe, value = self.effective_recipe, getattr(self, f.name)
        fixed = RECIPE_SETTINGS[recipe][f.name]
        if value != fixed:
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
