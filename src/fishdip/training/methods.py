"""The fine-tuning methods: one entry each, the only place a method is defined.

A method says which entries learn (``sparse_method``: a mask chosen, and maybe refreshed, by the
sparse engine, sparse/engine.py; ``wrap``: adapter weights added by the ``peft`` library;
``layers``: whole layers that take turns, training/layers.py; none of these: every parameter), its
default learning rate and recipe, and how a trained model is saved. The trainer, the options and the
run folders read everything from here; a new method is one ``Method`` entry plus, if it chooses
entries a new way, one ``SPARSE_METHODS`` row in sparse/methods.py (which options it reads follows
from the two rows: training/config.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fishdip.sparse.methods import SPARSE_METHODS

# torch is imported where an adapter is made: options, help texts and the CLI read this registry
# without loading torch (seconds of CPU before anything happens)


# --lora-variant: what peft's LoraConfig is given for each
LORA_VARIANTS = {
    "lora": {},
    "dora": {"use_dora": True},  # weight-decomposed: magnitude and direction (Liu et al. 2024)
    "rslora": {"use_rslora": True},  # scaled by alpha / sqrt(rank) (Kalajdzievski 2023)
    "pissa": {"init_lora_weights": "pissa"},  # from the principal singular vectors (Meng et al. 2024)
}


def peft_adapter(kind: str) -> Callable:
    """Wrap a model with LoRA or (IA)3 adapters; only the adapter weights then require gradients.
    Target modules: ``--lora-targets``, else peft's defaults for the architecture (T5, BART and
    Llama-style: the attention query/value projections for LoRA; keys, values and the feed-forward
    output for (IA)3). ``--lora-variant``: LoRA, DoRA, rsLoRA or PiSSA (``LORA_VARIANTS``)."""

    def wrap(model, cfg):
        import torch
        from peft import IA3Config, LoraConfig, TaskType, get_peft_model

        task = TaskType.SEQ_2_SEQ_LM if model.config.is_encoder_decoder else TaskType.CAUSAL_LM
        targets = [t.strip() for t in cfg.lora_targets.split(",")] if cfg.lora_targets else None
        if kind == "lora":
            config = LoraConfig(task_type=task, r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                lora_dropout=cfg.lora_dropout, target_modules=targets,
                                **LORA_VARIANTS[cfg.lora_variant])
        else:
            config = IA3Config(task_type=task)
        torch.manual_seed(cfg.seed)  # LoRA's A matrices start random: the same start for the same seed
        return get_peft_model(model, config)

    return wrap


def layer_turns(model, cfg):
    """LISA: ``--lisa-layers`` transformer layers learn at a time (training/layers.py)."""
    from fishdip.training.layers import LayerTurns

    return LayerTurns(model, cfg.lisa_layers, cfg.seed)


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    default_lr: float  # when --lr is not given
    sparse_method: str | None = None  # a sparse mask: the engine's method (sparse/engine.py: SPARSE_METHODS)
    wrap: Callable | None = None  # (model, cfg) -> the model with trainable adapters (dense optimizer)
    saves: str = "full"  # what --save auto writes: full | delta | adapter | none
    trains: bool = True  # False: in-context learning, the base model with demonstrations
    recipe: str = "default"  # when --recipe is not given (config.py): the one measured better for it
    # (model, cfg) -> who learns when, by whole parameters (``LayerTurns``): the dense optimizer steps
    # the parameters it lets learn; it chooses at step 0 and every --refresh-steps
    layers: Callable | None = None

    @property
    def sparse(self) -> bool:
        return self.sparse_method is not None

    @property
    def refreshes(self) -> bool:
        """Whether it chooses again every --refresh-steps."""
        return self.layers is not None or (self.sparse and SPARSE_METHODS[self.sparse_method].refresh)


# Sparse masks train 1 % of the entries and need a larger step than full fine-tuning (Sung et al.
# 2021 make the same observation for FISH masks).
# LoRA / (IA)3 rates: common starting points, not tuned here (the experiment grid sweeps them on dev).
# fish-dip runs the reference's recipe unless told otherwise: it measured better than AdamW with a
# dev-swept learning rate for fish-dip (README, "The paper's comparison on CoNLL04"). The other methods
# were not measured under it, so they keep AdamW.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", "every parameter learns", 1e-4),
    Method("fish", "one Fisher mask, computed before training on --fish-samples samples", 1e-3,
           sparse_method="fish", saves="delta"),
    Method("fish-dip", "a Fisher mask on the most regressing samples, recomputed every --refresh-steps", 1e-3,
           sparse_method="fish-dip", saves="delta", recipe="paper"),
    Method("random", "one uniformly random mask of the same size", 1e-3, sparse_method="random", saves="delta"),
    Method("random-dip", "a new random mask every --refresh-steps (ablation: dynamic, but not Fisher)", 1e-3,
           sparse_method="random-dip", saves="delta"),
    Method("sift", "one mask where the gradient summed over the training samples is largest (SIFT, Song et al. "
           "2023)", 1e-3, sparse_method="sift", saves="delta"),
    Method("spiel", "the entries that changed least leave the mask every --refresh-steps, as many with the "
           "largest gradient since join it (SpIEL-AG, Ansell et al. 2024; --regrow-rate)", 1e-3,
           sparse_method="spiel", saves="delta"),
    Method("lisa", "--lisa-layers random transformer layers learn, resampled every --refresh-steps; embeddings, "
           "norms and the head always (LISA, Pan et al. 2024)", 1e-4, layers=layer_turns),
    Method("lora", "low-rank adapters (peft; --lora-variant, --lora-rank, --lora-alpha, --lora-dropout, "
           "--lora-targets)", 5e-4, wrap=peft_adapter("lora"), saves="adapter"),
    Method("ia3", "(IA)3 rescaling vectors (peft, the architecture's default modules)", 3e-3,
           wrap=peft_adapter("ia3"), saves="adapter"),
    Method("icl", "no training: the most similar training examples as demonstrations in the prompt "
           "(--icl-context, --icl-selection)", 0.0, saves="none", trains=False),
)}
