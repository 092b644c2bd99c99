"""Shared fixtures: tiny random models that need no download, and the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from fishdip.models.loading import LoadedModel, prepare

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def real_data_dir() -> Path | None:
    """``$FISHDIP_DATA_DIR`` or ``../shared/data`` beside the checkout, if it holds CoNLL04."""
    for candidate in (os.environ.get("FISHDIP_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "conll04" / "conll04_types.json").is_file():
            return Path(candidate).resolve()  # tests change the working folder
    return None


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request, monkeypatch):
    """Torch's ops on the tiny models are too small to share among threads. With its default (a
    thread a core) they are as fast as with one on an idle machine, and 4x slower beside a background
    run that holds the cores (tests/test_constrained.py and test_generation.py on 2 cores beside two
    training processes: 161 s, 37 s with one thread). The tests that load the embedded model (marked
    slow) keep the default; the others' subprocesses get one thread too."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real data not found: set FISHDIP_DATA_DIR or place shared/data beside the repo")
    return found


def make_tiny_t5(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    tok = ByT5Tokenizer()  # byte-level: needs no vocabulary file
    config = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
                      num_heads=4, decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    return prepare(T5ForConditionalGeneration(config), tok, "tiny-t5")


def make_tiny_llama(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    tok = ByT5Tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return prepare(LlamaForCausalLM(config), tok, "tiny-llama")


def make_tiny_gemma3(seed: int = 0, softcap: float | None = None) -> LoadedModel:
    """Gemma 3's text model (scaled embeddings, sliding-window layers); ``softcap``: logit soft-capping."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    tok = ByT5Tokenizer()
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=16,
                              max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id, bos_token_id=None, final_logit_softcapping=softcap)
    return prepare(Gemma3ForCausalLM(config), tok, "tiny-gemma3")


@pytest.fixture(params=["t5", "llama"])
def tiny_model(request) -> LoadedModel:
    return make_tiny_t5() if request.param == "t5" else make_tiny_llama()


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A tiny random T5 saved as a model folder (for the command line and run folders)."""
    folder = tmp_path / "tiny-t5"
    loaded = make_tiny_t5()
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder
