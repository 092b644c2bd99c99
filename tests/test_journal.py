"""A stop during evaluation keeps the batches already generated: the continued run takes them and
writes what an uninterrupted run writes."""

import json

import pytest
from typer.testing import CliRunner

import fishdip.evaluation.predict as predict_module
from fishdip.cli import app
from fishdip.evaluation.journal import Journal, batch_key
from tests.conftest import FIXTURES


def test_a_journal_gives_back_its_batches_and_only_to_its_own_run(tmp_path):
    path, said = tmp_path / "checkpoint" / "episode-1.generations.jsonl", []
    journal = Journal.open(path, {"lr": 1, "weights": "abc"}, said.append)
    key = batch_key("generate", ["a b", "c"])
    assert journal.get(key) is None and said == []
    journal.add(key, ["[ a | x ] b", "c"], [False, True])
    again = Journal.open(path, {"lr": 1, "weights": "abc"}, said.append)
    assert again.get(key) == {"texts": ["[ a | x ] b", "c"], "hit_limit": [False, True]}
    assert "1 batch(es) generated before the stop" in said[-1]
    assert again.get(batch_key("arguments", ["a b", "c"])) is None  # another stage, another batch
    assert again.get(batch_key("generate", ["c", "a b"])) is None
    other = Journal.open(path, {"lr": 1, "weights": "def"}, said.append)  # a model trained anew
    assert other.get(key) is None and "another run or model" in said[-1]
    assert Journal.open(path, {"lr": 1, "weights": "abc"}, said.append).get(key) is None  # dropped for good
    other.remove()
    assert not path.exists() and not path.parent.exists()


def test_a_line_cut_by_a_kill_is_dropped_and_new_batches_follow_the_good_ones(tmp_path):
    path, identity = tmp_path / "episode-1.generations.jsonl", {"episode": 1}
    journal = Journal.open(path, identity)
    first, second, third = (batch_key("generate", [s]) for s in ("a", "b", "c"))
    journal.add(first, ["a"], [False])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"key": "' + second + '", "texts": ["b')  # killed while writing
    journal = Journal.open(path, identity, log=lambda *_: None)
    journal.add(third, ["c"], [False])
    reread = Journal.open(path, identity, log=lambda *_: None)
    assert reread.get(first) and reread.get(second) is None and reread.get(third) == {"texts": ["c"],
                                                                                      "hit_limit": [False]}


def test_a_continued_evaluation_generates_only_the_new_batches_and_its_bar_starts_at_the_kept_ones(tmp_path,
                                                                                                 monkeypatch):
    journal = Journal.open(tmp_path / "episode-1.generations.jsonl", {"episode": 1})
    journal.add(batch_key("generate", ["a", "b"]), ["[ a | x ]", "b"], [False, False])  # sorted by length: first
    generated, bars = [], []

    def generate(loaded, batch, *args, **kwargs):
        generated.append(batch)
        return predict_module.Generated([s.upper() for s in batch], [False] * len(batch))

    class Bar:
        def __init__(self, **kwargs):
            bars.append(kwargs)

        def update(self, n):
            bars.append(n)

        def close(self):
            pass

    monkeypatch.setattr(predict_module, "generate", generate)
    monkeypatch.setattr(predict_module, "tqdm", Bar)
    out = predict_module.generate_sorted(None, ["ccc", "a", "b", "dd"], 2, 16, 1, journal=journal)
    assert out.texts == ["CCC", "[ a | x ]", "b", "DD"] and generated == [["dd", "ccc"]]
    assert bars[0]["total"] == 4 and bars[0]["initial"] == 2 and bars[1:] == [2]


@pytest.mark.integration
def test_a_run_stopped_during_evaluation_continues_with_the_batches_it_wrote(tmp_path, tiny_model_dir,
                                                                            monkeypatch):
    def args(out):
        sentences = str(FIXTURES / "annotations" / "plain.jsonl")  # 8: 8 batches of one
        return ["train", "--train-file", sentences, "--eval-file", sentences, "--method", "full", "--model",
                str(tiny_model_dir), "--batch-size", "2", "--eval-batch-size", "1",
                "--max-length", "48", "--epochs", "1", "--save", "none", "--quiet", "--output-dir", str(out)]

    whole = tmp_path / "whole"
    assert CliRunner().invoke(app, args(whole)).exit_code == 0
    generate, calls = predict_module.generate, []

    def stopped_at_the_third_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return generate(*a, **k)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(predict_module, "generate", stopped_at_the_third_batch)
    result = CliRunner().invoke(app, args(stopped))
    assert result.exit_code != 0 and not (stopped / "results.json").exists()
    assert (stopped / "checkpoint" / "episode-1.generations.jsonl").is_file()
    calls.clear()
    monkeypatch.setattr(predict_module, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    result = CliRunner().invoke(app, args(stopped))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (whole / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and len(calls) == len(rows) - 2  # the two batches written before the stop are kept
    assert (stopped / "predictions.jsonl").read_text() == (whole / "predictions.jsonl").read_text()
    assert not (stopped / "checkpoint").exists()  # the journal goes with the checkpoint
