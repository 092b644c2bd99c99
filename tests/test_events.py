import json

import pytest

from fishdip.data.datasets import load_split
from fishdip.errors import DataError
from fishdip.formats import entity_relation as er
from fishdip.formats import events as ev
from fishdip.tasks import EventDecoded, EventTask, load_task
from fishdip.tasks.options import GenerationOptions
from tests.conftest import FIXTURES, make_tiny_t5

E, R = er.Entity, er.Relation


@pytest.fixture
def task() -> EventTask:
    return load_task("ace2005event", FIXTURES)


def test_two_stage_format(task):
    examples, _ = load_split("ace2005event", "train", FIXTURES)
    ex = examples[0]
    assert task.target(ex) == ("Rebels [ attacked | attack ] the convoy in Basra with rockets , "
                               "[ killing | die ] two soldiers .")
    attack = ex.triggers[0]
    assert ev.argument_source(ex.tokens, attack, task.triggers).startswith("Rebels [ attacked | attack ] the")
    pairs = task.pairs(examples)
    assert len(pairs) == 3 + 4  # one trigger pair per sentence, one argument pair per trigger
    assert pairs[1][1] == ("[ Rebels | attacker ] attacked the [ convoy | target ] in [ Basra | place ] with "
                           "[ rockets | instrument ] , killing two soldiers .")


def test_round_trip_every_fixture_example(task):
    for split in ("train", "dev", "test"):
        examples, _ = load_split("ace2005event", split, FIXTURES)
        for ex in examples:
            decoded = task.decode(task.gold_text(ex), ex)
            assert decoded.triggers == set(ex.triggers)
            assert decoded.arguments == set(ex.arguments)
            assert not decoded.errors


def test_schema_filters_roles(task):
    examples, _ = load_split("ace2005event", "test", FIXTURES)
    ex = examples[0]
    text = ("A gunman [ shot | attack ] three people in Texas . || [ A gunman | victim ] shot three people in "
            "[ Texas | place ] .")
    decoded = task.decode(text, ex)
    assert decoded.errors == {"role_not_in_schema": 1}  # victim is not an attack role
    assert {a.type for a in decoded.arguments} == {"Place"}


def test_metrics_hand_computed(task):
    examples, _ = load_split("ace2005event", "test", FIXTURES)
    ex = examples[0]  # gold: attack trigger (2,3); attacker (0,2), target (3,5), place (6,7)
    attack = ex.triggers[0]
    wrong_type = E(2, 3, "Life:Die")
    pred = EventDecoded({wrong_type}, {R("Victim", E(3, 5, "argument"), wrong_type),
                                       R("Place", E(6, 7, "argument"), wrong_type)}, {})
    m = task.score([ex], [pred])
    assert m["trigger_identification_f1"] == 1.0 and m["trigger_classification_f1"] == 0.0
    assert m["argument_identification_f1"] == 0.0  # event type is part of identification
    right = EventDecoded({attack}, {R("Target", E(3, 5, "argument"), attack),
                                    R("Attacker", E(6, 7, "argument"), attack)}, {})
    m = task.score([ex], [right])
    assert m["argument_identification_precision"] == 1.0
    assert m["argument_identification_recall"] == pytest.approx(2 / 3)
    assert m["argument_classification_precision"] == 0.5
    assert m["argument_classification_recall"] == pytest.approx(1 / 3)


def test_bad_event_file(tmp_path):
    for name in ("types", "schema"):
        (tmp_path / f"ace2005event_{name}.json").write_text((FIXTURES / "ace2005event" /
                                                              f"ace2005event_{name}.json").read_text())
    (tmp_path / "ace2005event_train.json").write_text(json.dumps(
        [{"tokens": ["a", "b"], "triggers": [{"type": "Conflict:Attack", "start": 0, "end": 1}],
          "relations": [{"type": "Target", "head": 2, "tail": 0}]}]))
    with pytest.raises(DataError, match=r"example 0: relation 0 head points at missing entity 2"):
        load_split("ace2005event", "train", _as_dataset_root(tmp_path))
    entity = {"type": "PER", "start": 1, "end": 2}
    for relation, problem in (({"type": "Target", "head": 0, "tail": 3}, "tail points at missing trigger 3"),
                              ({"type": "Nonsense", "head": 0, "tail": 0}, "has unknown role 'Nonsense'"),
                              ({"type": "Target", "head": 0}, "needs 'type', 'head' and 'tail'")):
        (tmp_path / "ace2005event_train.json").write_text(json.dumps(
            [{"tokens": ["a", "b"], "triggers": [{"type": "Conflict:Attack", "start": 0, "end": 1}],
              "entities": [entity], "relations": [relation]}]))
        with pytest.raises(DataError, match=rf"example 0: relation 0 {problem}"):
            load_split("ace2005event", "train", _as_dataset_root(tmp_path))


def _as_dataset_root(folder):
    root = folder / "root"
    (root / "ace2005event").mkdir(parents=True, exist_ok=True)
    for f in folder.glob("*.json"):
        (root / "ace2005event" / f.name).write_text(f.read_text())
    return root


@pytest.mark.integration
def test_chained_prediction_runs_with_tiny_model(task):
    examples, _ = load_split("ace2005event", "train", FIXTURES)
    texts, decoded = task.predict(make_tiny_t5(), examples, GenerationOptions(max_length=48), progress=False)
    assert len(texts) == len(decoded) == 3
    m = task.score(examples, decoded)
    assert 0.0 <= m["trigger_classification_f1"] <= 1.0
