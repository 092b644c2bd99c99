"""The Python API: train on in-memory examples with a model in memory, load, predict, evaluate (the
README's Python example runs in tests/test_docs.py)."""


import pytest

import fishdip
from fishdip.errors import FishdipError
from tests.conftest import make_tiny_t5

TRAIN = [
    {"tokens": "John Smith works for Acme Corp in Boston .".split(),
     "entities": [{"start": 0, "end": 2, "type": "PER"}, {"start": 4, "end": 6, "type": "ORG"},
                  {"start": 7, "end": 8, "type": "LOC"}],
     "relations": [{"type": "works_for", "head": 0, "tail": 1}]},
    {"tokens": "Mary Jones lives in Paris .".split(),
     "entities": [{"start": 0, "end": 2, "type": "PER"}, {"start": 4, "end": 5, "type": "LOC"}],
     "relations": []},
]


@pytest.mark.integration
def test_train_on_examples_in_memory_then_load_and_predict(tmp_path):
    tiny = make_tiny_t5()
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    logged = []
    result = fishdip.train(examples=TRAIN, eval_examples=TRAIN, model=(tiny.model, tiny.tokenizer),
                           method=["full", "fish-dip"], epochs=2, batch_size=2, max_length=64, episodes=[1, 2],
                           output_dir=str(tmp_path / "run"), progress=False, log=logged.append)
    assert set(result.metrics) == {"full", "fish-dip"}
    for method, run in result.runs.items():  # the means over the recorded episodes
        scores = [e["metrics"]["entity_f1"] for e in run["episodes"]]
        assert [e["episode"] for e in run["episodes"]] == [1, 2]
        assert result.metrics[method]["entity_f1"] == pytest.approx(sum(scores) / 2)
        assert "relation_f1" in result.metrics[method]
    assert (result.output_dir / "comparison.md").read_text().startswith("# in-memory: method comparison")
    # every episode started from the same weights: the caller's model is untouched
    assert all((before[k] == v).all() for k, v in tiny.model.state_dict().items())

    predictor = fishdip.load(result.model_dir("fish-dip", 2))
    rows = predictor.predict(["Anna Berg met John F. Kennedy in the U.S.", ["Anna", "Berg", "sang"]])
    assert rows[0]["tokens"][-2:] == ["U.S", "."] and rows[1]["tokens"] == ["Anna", "Berg", "sang"]
    for row in rows:
        for entity in row["entities"]:
            assert 0 <= entity["start"] < entity["end"] <= len(row["tokens"])
    text = "Anna Berg met John F. Kennedy in the U.S."
    for entity in rows[0]["entities"]:
        assert text[entity["char_start"]:entity["char_end"]] == entity["text"]
    # the saved model, loaded again, scores what its episode recorded (the same generations)
    metrics = predictor.evaluate(examples=TRAIN)
    recorded = result.runs["fish-dip"]["episodes"][1]["metrics"]
    assert metrics == recorded


def test_unknown_option_and_missing_eval_examples_are_refused(tmp_path):
    with pytest.raises(FishdipError, match="unknown option"):
        fishdip.train(task="conll04", epoch=3, output_dir=str(tmp_path / "x"))
    with pytest.raises(FishdipError, match="eval_examples"):
        fishdip.train(examples=TRAIN, output_dir=str(tmp_path / "x"))
    with pytest.raises(FishdipError, match="no trained fishdip model"):
        fishdip.load(tmp_path)
