"""Delta checkpoints: base + delta is the fine-tuned model, bit for bit; a wrong base is refused."""

import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from fishdip.cli import main
from fishdip.errors import FishdipError
from fishdip.models.delta import DELTA_FILE, weights_checksum
from fishdip.models.generation import generate
from fishdip.models.loading import load_model, save_delta_model
from fishdip.training.config import TrainConfig
from fishdip.training.trainer import Trainer
from tests.conftest import FIXTURES, make_tiny_t5

PAIRS = [(f"Ann{i} lives in Rome{i % 3} .", f"[ Ann{i} | person ] lives in [ Rome{i % 3} | location ] .")
         for i in range(8)]


def _fine_tune(base_dir, method="fish-dip", **kw):
    loaded = load_model(str(base_dir))
    checksum = weights_checksum(loaded.model)
    cfg = TrainConfig(method=method, epochs=3, batch_size=4, lr=1e-2, density=0.05, refresh_steps=2, max_length=64,
                      **kw)
    trainer = Trainer(loaded, PAIRS, cfg, progress=False)
    trainer.train()
    return loaded, trainer, checksum


@pytest.mark.parametrize("method, options", [("fish-dip", {}), ("spiel", {"regrow_rate": 0.5})])
@pytest.mark.integration
def test_base_plus_delta_is_the_fine_tuned_model(tiny_model_dir, tmp_path, method, options):
    # spiel: the union holds entries that left the mask, back at their base values
    loaded, trainer, checksum = _fine_tune(tiny_model_dir, method, **options)
    assert len(trainer.result.refreshes) > 1  # the union spans several masks
    folder = tmp_path / "delta"
    save_delta_model(loaded, trainer.touched, folder, {"base_model": str(tiny_model_dir)}, checksum)
    restored = load_model(str(folder))
    for (name, a), (_, b) in zip(loaded.model.named_parameters(), restored.model.named_parameters()):
        assert torch.equal(a, b), name
    sources = [s for s, _ in PAIRS[:3]]
    assert generate(loaded, sources, 64).texts == generate(restored, sources, 64).texts
    meta = json.loads((folder / "fishdip.json").read_text())
    assert meta["delta_entries"] == trainer.result.touched_entries
    full_bytes = sum((tiny_model_dir / f).stat().st_size for f in ["model.safetensors"])
    assert (folder / DELTA_FILE).stat().st_size < full_bytes * 0.3  # 5 % density, several refreshes


@pytest.mark.integration
def test_delta_on_other_weights_is_refused(tiny_model_dir, tmp_path):
    loaded, trainer, checksum = _fine_tune(tiny_model_dir)
    save_delta_model(loaded, trainer.touched, tmp_path / "delta", {"base_model": str(tiny_model_dir)}, checksum)
    make_tiny_t5(seed=1).model.save_pretrained(tiny_model_dir)  # the base folder now holds other weights
    with pytest.raises(FishdipError, match="belongs to other weights"):
        load_model(str(tmp_path / "delta"))


def _ok(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code in (0, None)


@pytest.mark.integration
def test_train_saves_deltas_and_export_merges_them(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    _ok(["train", "--task", "conll03", "--data-dir", str(FIXTURES), "--model", str(tiny_model_dir),
          "--method", "fish-dip", "--train-size", "6", "--epochs", "1", "--batch-size", "3", "--eval-limit", "2",
          "--max-length", "64", "--density", "0.05", "--quiet", "--output-dir", str(out)])
    saved = out / "models" / "episode-1"
    assert (saved / DELTA_FILE).is_file() and not (saved / "model.safetensors").exists()
    merged = tmp_path / "merged"
    _ok(["export", str(out), "--output", str(merged)])
    plain = AutoModelForSeq2SeqLM.from_pretrained(merged)  # no fishdip needed to read it
    via_delta = load_model(str(saved)).model
    for (name, a), (_, b) in zip(plain.named_parameters(), via_delta.named_parameters()):
        assert torch.equal(a, b), name
    base = AutoModelForSeq2SeqLM.from_pretrained(tiny_model_dir)
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), base.parameters()))
    with pytest.raises(SystemExit) as exit_info:  # never overwrites a folder that has files
        main(["export", str(out), "--output", str(merged)])
    assert exit_info.value.code == 2
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lora", "ia3", "dora", "pissa"])
@pytest.mark.integration
def test_adapter_methods_train_only_adapters_and_reload_merged(tiny_model_dir, tmp_path, method):
    out = tmp_path / "run"
    variant = ["--method", "lora", "--lora-variant", method] if method in ("dora", "pissa") else ["--method", method]
    _ok(["train", "--task", "conll03", "--data-dir", str(FIXTURES), "--model", str(tiny_model_dir),
         *variant, "--train-size", "6", "--epochs", "2", "--batch-size", "1", "--eval-limit", "2",
         "--max-length", "64", "--lr", "0.05", "--decoding", "free", "--quiet", "--output-dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    train = results["episodes"][0]["train"]
    assert 0 < train["trainable_params"] < train["total_params"] / 5  # adapters only (a tiny model: ~10 %)
    saved = out / "models" / "episode-1"
    if method == "pissa":  # it changed the base weights: saved merged, a plain model
        assert (saved / "model.safetensors").is_file() and not (saved / "adapter_config.json").exists()
    else:
        assert (saved / "adapter_config.json").is_file() and not (saved / "model.safetensors").exists()
    # reloaded (base + adapter, merged) it writes what the run generated
    from fishdip.api import load

    predictor = load(saved)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    texts = generate(predictor.loaded, [r["input"] if isinstance(r["input"], str) else " ".join(r["input"])
                                        for r in rows], 64).texts
    assert texts == [r["generated"] for r in rows]
    base = AutoModelForSeq2SeqLM.from_pretrained(tiny_model_dir)
    assert any(not torch.equal(a, b) for a, b in zip(predictor.loaded.model.parameters(), base.parameters()))
