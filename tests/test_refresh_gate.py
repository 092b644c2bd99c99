"""--refresh-gate: the static-mask control (never) and the sample-gated refresh (regressing)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from fishdip.sparse.choices import GATE_MIN_LOSS
from fishdip.sparse.engine import SparseConfig, SparseEngine
from fishdip.training.config import TrainConfig
from fishdip.training.trainer import Trainer
from tests.conftest import make_tiny_llama
from tests.test_trainer import PAIRS


def _scripted_engine(history: list[list[float]], tokens: list[int] | None = None, gate: str = "regressing"):
    """An engine over one small parameter whose rankings return ``history``'s rows in turn."""
    weight = torch.nn.Parameter(torch.arange(1.0, 21.0))
    calls = iter(history)
    current: list[float] = []

    def batch_losses(ids):
        return torch.tensor([current[i] for i in ids])

    class Ranked(SparseEngine):
        def rank(self, step=0):  # the scripted losses of this ranking, through the real batching
            current[:] = next(calls)
            return super().rank(step)

    return Ranked({"w": weight}, SparseConfig(density=0.1, refresh_gate=gate, regressing_samples=1),
                  sample_loss=lambda i: (weight * (i + 1)).sum(), batch_losses=batch_losses,
                  num_samples=len(history[0]), batch_size=2, tokens=tokens)


def _run(engine: SparseEngine, steps: list[int]) -> list[dict]:
    records = []
    for step in steps:
        mask, info = engine.choose(step)
        engine.install(mask)
        records.append(info)
    return records


def test_the_gate_refreshes_only_when_some_sample_regressed_above_the_threshold():
    low, high = GATE_MIN_LOSS / 10, GATE_MIN_LOSS * 10
    history = [
        [3.0, 2.0, 1.0],                  # step 0: the first mask is always computed
        [low, low, low],                  # everything fell: keep the mask
        [low * 5, low, low],              # sample 0 rose, but stays under the threshold: keep
        [low * 5, high, low],             # sample 1 rose above it: a new mask
        [low, high, low / 2],             # sample 1 above the threshold but not higher than before: keep
        [low, high * 1.01, low],          # sample 1 higher again: a new mask
    ]
    records = _run(_scripted_engine(history), [0, 10, 20, 30, 40, 50])
    kept = [bool(r.get("kept")) for r in records]
    assert kept == [False, True, True, False, True, False]
    assert [r.get("regressed") for r in records] == [None, [], [], [1], [], [1]]
    assert all("samples" in r for r, k in zip(records, kept) if not k)  # a computed mask records its samples
    assert all("ranking_losses" in r for r in records)  # a skip records the ranking it decided on


def test_the_gate_compares_mean_per_token_losses_when_ranking_by_sum():
    # summed losses: sample 1 has 100 tokens, so its sum rising from 0.05 to 0.09 is a mean of 9e-4 < 1e-3
    history = [[3.0, 2.0], [1e-4, 0.05], [1e-4, 0.09], [1e-4, 0.2]]
    records = _run(_scripted_engine(history, tokens=[10, 100]), [0, 1, 2, 3])
    assert [bool(r.get("kept")) for r in records] == [False, True, True, False]


def _gate_reading():
    """scripts/gate_reading.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("gate_reading",
                                                  Path(__file__).parents[1] / "scripts" / "gate_reading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reading_records_by_the_gate_rule_agrees_with_the_gate():
    # summed losses (tokens 10, 100, 1): the ungated run's records, read by the rule, find the samples
    # the gated run's own gate found; and a gated run's reading agrees with its recorded decisions
    low, high = GATE_MIN_LOSS / 10, GATE_MIN_LOSS * 10
    tokens = [10, 100, 1]
    means = [[3.0, 2.0, 1.0], [low, low, low], [low * 5, low, low], [low * 5, high, low], [low, high, low / 2],
             [low, high * 2, low]]
    history = [[m * t for m, t in zip(row, tokens)] for row in means]
    steps = [0, 10, 20, 30, 40, 50]
    gated = _run(_scripted_engine(history, tokens=tokens), steps)
    ungated = _run(_scripted_engine(history, tokens=tokens, gate="none"), steps)
    reading = _gate_reading()
    read = reading.read_rankings(ungated, tokens)
    assert [r["regressed"] for r in read[1:]] == [r["regressed"] for r in gated[1:]] == [[], [], [1], [], [1]]
    assert [len(r["rose"]) for r in read[1:]] == [0, 1, 1, 0, 2]  # the last: sample 2 rose, under the threshold
    assert all(r["recorded"] == r["regressed"] for r in reading.read_rankings(gated, tokens)[1:])
    assert read[0]["max_per_token"] == pytest.approx(3.0)


def test_no_gate_and_never():
    history = [[3.0, 2.0], [1e-5, 1e-5], [1e-6, 1e-6]]
    records = _run(_scripted_engine(history, gate="none"), [0, 1, 2])
    assert not any(r.get("kept") for r in records)
    never = _scripted_engine(history, gate="never")
    assert not never.refresh_due(99) and _scripted_engine(history, gate="none").refresh_due(99)  # reference: 99
    with pytest.raises(ValueError, match="fish never refreshes"):
        SparseConfig(method="fish", refresh_gate="never")
    with pytest.raises(ValueError, match="random-dip does not rank"):
        SparseConfig(method="random-dip", refresh_gate="regressing")


def _paper(**kw) -> TrainConfig:
    # fish-dip's own recipe (the reference's Adafactor, ranking by summed loss, refresh before the step)
    return TrainConfig(method="fish-dip", epochs=4, batch_size=4, density=0.05, refresh_steps=3, max_length=96,
                       seed=3, **kw)


def _same(losses):
    return [{k: v for k, v in x.items() if k != "seconds"} for x in losses]


@pytest.mark.integration
def test_the_control_keeps_fish_dips_first_mask_and_equals_it_until_the_first_refresh():
    paper_model, control_model = make_tiny_llama(), make_tiny_llama()
    start = {n: p.detach().clone() for n, p in control_model.model.named_parameters()}
    paper = Trainer(paper_model, PAIRS, _paper(), progress=False).train()
    trainer = Trainer(control_model, PAIRS, _paper(refresh_gate="never"), progress=False)
    control = trainer.train()
    first_refresh = paper.refreshes[1]["step"]  # after 2 completed steps (the reference's phase)
    assert first_refresh == 2 and control.steps == paper.steps == 12
    assert len(control.refreshes) == 1 and len(paper.refreshes) == 5
    first = {k: v for k, v in control.refreshes[0].items() if "seconds" not in k}
    assert first == {k: v for k, v in paper.refreshes[0].items() if "seconds" not in k}  # same ranking and mask
    assert _same(control.losses[:first_refresh + 1]) == _same(paper.losses[:first_refresh + 1])
    assert _same(control.losses) != _same(paper.losses)
    # the first mask for the whole run: nothing outside it ever moved, bit for bit
    assert trainer.mask.checksum() == control.refreshes[0]["mask_checksum"]
    for name, p in control_model.model.named_parameters():
        outside = ~trainer.mask.dense(name, p)
        assert torch.equal(p.detach()[outside], start[name][outside]), name
    assert control.touched_entries == trainer.num_keep


def _gated(checkpoint=None) -> Trainer:
    """A gated run whose ranking after step 5 sees sample 0's loss doubled: it regressed there."""
    trainer = Trainer(make_tiny_llama(), PAIRS, _paper(refresh_gate="regressing"), progress=False,
                      checkpoint=checkpoint)
    ranked = trainer.engine.batch_losses

    def batch_losses(ids):
        losses = ranked(ids)
        if len(trainer.result.losses) == 5:
            losses = losses * torch.tensor([2.0 if i == 0 else 1.0 for i in ids])
        return losses

    trainer.engine.batch_losses = batch_losses
    return trainer


@pytest.mark.integration
def test_a_gated_run_records_its_skips_and_continues_from_a_checkpoint_with_the_gate_state(tmp_path):
    from fishdip.training.checkpoint import Checkpoint

    trainer = _gated()
    whole = trainer.train()
    # this tiny model's losses only fall, so only the refresh after step 5 (sample 0 doubled) recomputes
    assert [(r["step"], r.get("kept"), r.get("regressed")) for r in whole.refreshes] == \
           [(0, None, None), (2, True, []), (5, None, [0]), (8, True, []), (11, True, [])]
    assert whole.refreshes[2]["overlap_with_previous"] < 1 and "samples" in whole.refreshes[2]
    masks = {r.get("mask_checksum") for r in whole.refreshes} - {None}
    assert len(masks) == 2 and trainer.mask.checksum() == whole.refreshes[2]["mask_checksum"]

    class Stop(Exception):
        pass

    checkpoint = Checkpoint(tmp_path / "ckpt", every_seconds=0)
    first = _gated(checkpoint)
    original = first._step

    def stop_after_seven(*args):
        if len(first.result.losses) == 7:
            raise Stop
        return original(*args)

    first._step = stop_after_seven
    with pytest.raises(Stop):
        first.train()
    # continued after step 7: the ranking of step 5 (sample 0 doubled) must come back from the
    # checkpoint, else the gate at step 8 would compare against nothing and refresh
    resumed = _gated(checkpoint).train()
    assert resumed.resumed_at == [7]
    assert _same(resumed.losses) == _same(whole.losses)
    assert [(r["step"], r.get("kept"), r.get("regressed")) for r in resumed.refreshes] == \
           [(r["step"], r.get("kept"), r.get("regressed")) for r in whole.refreshes]
