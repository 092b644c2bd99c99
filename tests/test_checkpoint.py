"""A running episode's training state survives a stop: continuing gives what an uninterrupted run gives."""

import json
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.training.checkpoint import Checkpoint, checkpoint_path, saved_progress
from fishdip.training.trainer import Curve, Trainer
from tests.conftest import FIXTURES, make_tiny_t5
from tests.test_trainer import PAIRS, _cfg


@dataclass
class KilledAt(Checkpoint):
    """A checkpoint whose run is killed right after it saves at step ``kill``."""

    kill: int = 0

    def save(self, state: dict) -> None:
        super().save(state)
        if state["where"]["step"] == self.kill:
            raise KeyboardInterrupt


@dataclass
class SignalledAt(Checkpoint):
    """A checkpoint whose process is sent SIGTERM (as ``kill`` or a session's end sends it) while the
    trainer asks, after step ``at``, whether a save is due."""

    at: int = 0
    asked: int = 0

    def due(self) -> bool:
        self.asked += 1
        if self.asked == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().due()


def _train(cfg, checkpoint=None, curve_every=None):
    loaded = make_tiny_t5()  # T5 has dropout: the RNG state must be carried over too
    curve = None
    if curve_every:  # a cheap "metric" that depends on the weights, like a real score would
        curve = Curve(curve_every, lambda: {"norm": float(sum(p.float().norm() for p in loaded.model.parameters()))})
    trainer = Trainer(loaded, PAIRS, cfg, progress=False, checkpoint=checkpoint, curve=curve)
    result = trainer.train()
    return trainer, result, {n: p.detach().clone() for n, p in loaded.model.named_parameters()}


CASES = {
    # 10 pairs, micro-batches of 2, 2 per step: 3 steps an epoch, so a kill falls inside an epoch
    "fish-dip paper recipe": dict(recipe="paper", lr=None, refresh_steps=2),
    "fish-dip default recipe": dict(refresh_steps=3),
    "full": dict(method="full", lr=1e-3),
    "lora": dict(method="lora", lr=1e-2),
    "random-dip": dict(method="random-dip", refresh_steps=2),
    "spiel": dict(method="spiel", refresh_steps=2, regrow_rate=0.5),  # the gradient sums come back too
    "lisa": dict(method="lisa", lr=1e-3, refresh_steps=2, lisa_layers=1),  # the turn's layers come back
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
@pytest.mark.integration
def test_a_killed_run_continued_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path, options):
    cfg = _cfg(epochs=3, batch_size=2, grad_accum_steps=2, **options)
    _, whole, whole_weights = _train(cfg, curve_every=2)
    path = tmp_path / "episode-1.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, KilledAt(path, every_seconds=0, kill=4), curve_every=2)
    assert path.is_file()
    trainer, continued, weights = _train(cfg, Checkpoint(path, every_seconds=0), curve_every=2)
    assert continued.resumed_at == [4]
    # the start and the continue each record what ran them (CPU kernels differ in last digits)
    assert len(continued.machines) == 2 and continued.machines[0].startswith("torch ")
    assert 0 < continued.seconds_before_resume <= continued.seconds  # the time before the stop counts
    assert [x["loss"] for x in continued.losses] == [x["loss"] for x in whole.losses]  # bit-identical
    assert [r.get("mask_checksum") for r in continued.refreshes] == [r.get("mask_checksum") for r in whole.refreshes]
    assert [(c["step"], c["metrics"]) for c in continued.curve] == [(c["step"], c["metrics"]) for c in whole.curve]
    assert continued.touched_entries == whole.touched_entries
    for name, value in whole_weights.items():
        assert torch.equal(weights[name], value), name


@pytest.mark.integration
def test_a_signal_stops_training_after_the_step_in_progress_with_its_state_saved(tmp_path):
    cfg = _cfg(epochs=3, batch_size=2, grad_accum_steps=2, recipe="paper", lr=None, refresh_steps=2)
    _, whole, whole_weights = _train(cfg)
    path, handler = tmp_path / "episode-1.pt", signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):  # the CLI's "interrupted: ... run the same command again"
        _train(cfg, SignalledAt(path, every_seconds=1e9, at=5))  # no timed save: the signal's alone
    assert signal.getsignal(signal.SIGTERM) is handler  # the handlers are given back
    step, seconds = saved_progress(path)  # what a dry run of the grid shows of the stopped cell
    assert step == 5 and seconds > 0
    _, continued, weights = _train(cfg, Checkpoint(path, every_seconds=1e9))
    assert continued.resumed_at == [5]  # nothing of the 5 steps is lost
    assert [x["loss"] for x in continued.losses] == [x["loss"] for x in whole.losses]
    for name, value in whole_weights.items():
        assert torch.equal(weights[name], value), name


def test_a_second_sigint_interrupts_at_once(tmp_path):
    checkpoint = Checkpoint(tmp_path / "episode-1.pt")
    with checkpoint.stop_on_signal():
        os.kill(os.getpid(), signal.SIGINT)  # the first: noted, the step goes on
        assert checkpoint.stop_signal == signal.SIGINT and checkpoint.due()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.integration
def test_a_checkpoint_of_another_run_is_ignored(tmp_path):
    path = tmp_path / "episode-1.pt"
    cfg = _cfg(epochs=1, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, KilledAt(path, every_seconds=0, identity={"lr": 1}, kill=1))
    said = []
    other = Checkpoint(path, every_seconds=0, identity={"lr": 2})
    trainer = Trainer(make_tiny_t5(), PAIRS, cfg, progress=False, checkpoint=other, log=said.append)
    result = trainer.train()
    assert result.resumed_at == [] and result.steps == 3
    assert "a training checkpoint of another run" in said[0]
    path.write_bytes(b"not a checkpoint")  # a truncated file: start over, say so
    assert Checkpoint(path, identity={"lr": 2}).load(said.append) is None and "unreadable" in said[-1]
    assert saved_progress(path) is None and saved_progress(tmp_path / "none.pt") is None


def test_the_checkpoint_can_live_outside_the_run_folder(tmp_path, monkeypatch):
    assert checkpoint_path(tmp_path / "run", 2) == tmp_path / "run" / "checkpoint" / "episode-2.pt"
    monkeypatch.setenv("FISHDIP_CHECKPOINT_DIR", str(tmp_path / "elsewhere"))
    a, b = checkpoint_path(tmp_path / "run", 2), checkpoint_path(tmp_path / "other", 2)
    assert a.parent.parent == tmp_path / "elsewhere" and a.name == "episode-2.pt" and a != b


@pytest.mark.integration
def test_a_run_records_its_curve_and_removes_its_checkpoint(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    args = ["train", "--task", "conll03", "--method", "fish-dip", "--model", str(tiny_model_dir), "--data-dir",
            str(FIXTURES), "--eval-split", "dev", "--batch-size", "2", "--max-length", "48", "--output-dir",
            str(out), "--quiet", "--save", "none", "--epochs", "2", "--eval-every", "2", "--curve-limit", "3",
            "--checkpoint-every", "0", "--refresh-steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    train = json.loads((out / "results.json").read_text())["episodes"][0]["train"]
    assert [c["step"] for c in train["curve"]] == list(range(2, train["steps"] + 1, 2))
    first = train["curve"][0]
    assert first["epoch"] >= 1 and "entity_f1" in first["metrics"] and first["train_loss"] > 0
    assert not (out / "checkpoint").exists()
    config = json.loads((out / "config.json").read_text())
    assert (config["eval_every"], config["curve_split"], config["subset_sampling"]) == (2, "dev", "random")


@pytest.mark.integration
def test_a_failed_curve_point_is_recorded_and_training_goes_on():
    def broken():
        raise RuntimeError("out of memory")

    said = []
    trainer = Trainer(make_tiny_t5(), PAIRS, _cfg(epochs=1, batch_size=4), progress=False,
                      curve=Curve(1, broken), log=said.append)
    result = trainer.train()
    assert result.steps == 3 and [c["error"] for c in result.curve] == ["RuntimeError: out of memory"] * 3
    assert "curve point at step 1 failed" in said[0]


@pytest.mark.integration
def test_an_early_stop_adds_a_last_curve_point_where_training_ended():
    trainer = Trainer(make_tiny_t5(), PAIRS, _cfg(epochs=8, batch_size=4, stop_loss=100.0), progress=False,
                      curve=Curve(7, lambda: {"x": 1.0}))
    result = trainer.train()
    assert result.stopped_early == 20  # 20 steps in a row below the threshold
    assert [c["step"] for c in result.curve] == [7, 14, 20]
