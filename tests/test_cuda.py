"""What runs on a GPU (marked ``cuda``; skipped without one): every method trains a few steps in fp32
and bf16, its saved model evaluates, predicts and exports there, and a killed run continues from its
checkpoint. Run them on a lent GPU before a grid: ``pytest -m cuda``."""

import json

import pytest
import torch
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.training.methods import METHODS
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
runner = CliRunner()
TRAINED = [name for name, method in METHODS.items() if method.trains]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", TRAINED)
def test_every_method_trains_saves_evaluates_predicts_and_exports_on_the_gpu(method, precision, tmp_path,
                                                                              tiny_model_dir):
    out = tmp_path / "run"
    refresh = ["--refresh-steps", "2"] if METHODS[method].refreshes else []
    result = runner.invoke(app, ["train", "--model", str(tiny_model_dir), "--task", "conll03", "--data-dir",
                                 str(FIXTURES), "--method", method, "--train-size", "6", "--max-steps", "4",
                                 *refresh, "--batch-size", "3", "--eval-limit", "4", "--device", "cuda",
                                 "--precision", precision, "--output-dir", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    episode = json.loads((out / "results.json").read_text())["episodes"][0]
    assert episode["train"]["steps"] == 4 and episode["train"]["precision"] == precision
    assert torch.cuda.get_device_name() in episode["train"]["machines"][0]
    model = out / "models" / "episode-1"
    scored = runner.invoke(app, ["evaluate", "--model", str(model), "--data-dir", str(FIXTURES), "--eval-limit",
                                 "4", "--device", "cuda"])
    assert scored.exit_code == 0, scored.output
    if precision == "fp32":  # what training recorded (its bf16 generations ran under autocast)
        assert json.loads(scored.stdout[scored.stdout.index("{"):]) == episode["metrics"]
    said = runner.invoke(app, ["predict", "--model", str(model), "--device", "cuda", "Anna Berg lives in Rome ."])
    rows = [json.loads(line) for line in said.stdout.splitlines() if line.startswith("{")]
    assert said.exit_code == 0 and rows[0]["tokens"][0] == "Anna"
    exported = runner.invoke(app, ["export", str(model), "--output", str(tmp_path / "merged")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "merged" / "config.json").is_file()


@pytest.mark.parametrize("method", ["full", "fish-dip", "lora"])
def test_a_killed_gpu_run_continued_from_its_checkpoint_equals_an_uninterrupted_one(method, tmp_path):
    from fishdip.training.checkpoint import Checkpoint
    from fishdip.training.trainer import Trainer
    from tests.conftest import make_tiny_t5
    from tests.test_checkpoint import KilledAt
    from tests.test_trainer import PAIRS, _cfg

    cfg = _cfg(method=method, epochs=3, batch_size=2, grad_accum_steps=2, refresh_steps=2,
               lr=1e-3 if method == "full" else 1e-2)

    def train(checkpoint=None):
        loaded = make_tiny_t5()
        loaded.model.to("cuda")
        result = Trainer(loaded, PAIRS, cfg, progress=False, checkpoint=checkpoint).train()
        return result, {n: p.detach().cpu() for n, p in loaded.model.named_parameters()}

    whole, whole_weights = train()
    path = tmp_path / "episode-1.pt"
    with pytest.raises(KeyboardInterrupt):
        train(KilledAt(path, every_seconds=0, kill=4))
    continued, weights = train(Checkpoint(path, every_seconds=0))
    assert continued.resumed_at == [4]
    # CUDA's backward kernels (embedding gradients: atomic adds) are not bit-reproducible, so two runs
    # agree to rounding here, where the CPU's agree bit for bit (tests/test_checkpoint.py)
    assert [x["loss"] for x in continued.losses] == pytest.approx([x["loss"] for x in whole.losses], rel=1e-4)
    assert all(torch.allclose(weights[n], whole_weights[n], atol=1e-5) for n in whole_weights)
