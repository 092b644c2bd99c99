from collections import Counter

import pytest

from fishdip.evaluation.metrics import aggregate, joint_er_scores, prf
from fishdip.formats.entity_relation import Decoded, Entity, Example, Relation

A, B, C = Entity(0, 1, "Peop"), Entity(2, 4, "Loc"), Entity(5, 6, "Org")


def test_prf_hand_computed():
    assert prf(2, 4, 5) == pytest.approx({"precision": 0.5, "recall": 0.4, "f1": 2 * 0.5 * 0.4 / 0.9})
    assert prf(0, 0, 3) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_joint_er_scores_hand_computed():
    gold = [Example(list("abcdef"), [A, B, C], [Relation("Live_In", A, B), Relation("Work_For", A, C)])]
    # B predicted with the wrong type; C missing; one extra entity; relation to B has right spans only
    wrong_b = Entity(2, 4, "Org")
    extra = Entity(4, 5, "Loc")
    pred = [Decoded({A, wrong_b, extra}, {Relation("Live_In", A, wrong_b)}, Counter(missing_tail=1))]
    m = joint_er_scores(gold, pred)
    # entities: correct {A} of 3 predicted, 3 gold
    assert m["entity_precision"] == pytest.approx(1 / 3) and m["entity_recall"] == pytest.approx(1 / 3)
    # untyped: A and (2,4) correct
    assert m["entity_precision_no_type"] == pytest.approx(2 / 3)
    assert m["relation_f1"] == 0.0
    # untyped relation: (Live_In, (0,1), (2,4)) matches; 1 predicted, 2 gold
    assert m["relation_precision_no_type"] == 1.0 and m["relation_recall_no_type"] == 0.5
    assert m["errors"] == {"missing_tail": 1}


def test_aggregate_mean_and_std():
    agg = aggregate([{"f1": 0.5, "errors": {}}, {"f1": 0.7, "errors": {}}])
    assert agg["f1"]["mean"] == pytest.approx(0.6)
    assert agg["f1"]["std"] == pytest.approx(0.1414213562)
    assert "errors" not in agg
    assert aggregate([{"f1": 0.5}])["f1"]["std"] == 0.0


def test_macro_average_over_types_hand_computed():
    drug, effect, other = Entity(0, 1, "Drug"), Entity(2, 3, "AE"), Entity(4, 5, "AE")
    gold = Example(["a"] * 6, [drug, effect, other], [Relation("Adverse", effect, drug)])
    # Drug: 1/1 right (F1 1); AE: 1 of 2 found, 1 wrong predicted (P 1/2, R 1/2, F1 1/2)
    pred = Decoded({drug, effect, Entity(5, 6, "AE")}, {Relation("Adverse", effect, drug)}, Counter())
    m = joint_er_scores([gold], [pred], (["Drug", "AE"], ["Adverse"]))
    assert m["entity_f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))  # micro: 2 of 3, 2 of 3
    assert m["entity_macro_f1"] == pytest.approx((1 + 0.5) / 2)
    assert m["entity_macro_precision"] == pytest.approx((1 + 0.5) / 2)
    assert m["relation_macro_f1"] == pytest.approx(1.0)
    # a type with no gold and no prediction counts as 0, as in scikit-learn with explicit labels
    m = joint_er_scores([gold], [pred], (["Drug", "AE", "Dose"], ["Adverse"]))
    assert m["entity_macro_f1"] == pytest.approx(1.5 / 3)
    assert "entity_macro_f1" not in joint_er_scores([gold], [pred])


def test_ade_reports_macro_and_conll04_micro_only(data_dir):
    from fishdip.data.datasets import load_split
    from fishdip.tasks import load_task
    from tests.conftest import FIXTURES

    ade = load_task("ade", FIXTURES)
    examples, _ = load_split("ade", "test", FIXTURES)
    decoded = [ade.decode(ade.target(ex), ex) for ex in examples]
    m = ade.score(examples, decoded)
    assert m["entity_macro_f1"] == 1.0 and m["relation_macro_f1"] == 1.0
    conll04 = load_task("conll04", data_dir)
    examples, _ = load_split("conll04", "dev", data_dir)
    m = conll04.score(examples[:5], [conll04.decode(conll04.target(ex), ex) for ex in examples[:5]])
    assert "entity_macro_f1" not in m and m["relation_f1"] == 1.0


@pytest.mark.parametrize("dataset, family", [("ace2005_joint_er", "joint_er"), ("ade", "joint_er"), ("conll03", "ner"),
                                             ("conll05", "srl"), ("ace2005event", "event"), ("multiwoz21", "dst"),
                                             ("fewrel", "fewshot_rc")])
def test_every_score_a_family_returns_is_one_its_tables_show(dataset, family):
    """Reports show a family's declared metrics (Task.metrics): a new F1 or accuracy in ``score`` that
    is not declared fails here instead of silently missing from every table; every declared one is
    reported on perfect predictions with the value 1."""
    from fishdip.data.datasets import load_split
    from fishdip.formats import relation_classification as rc
    from fishdip.tasks import FAMILIES, METRICS, load_task
    from tests.conftest import FIXTURES

    cls = FAMILIES[family]
    if family == "fewshot_rc":  # episodes, not splits: two hand-made examples
        golds = [rc.RCExample(["a", "b"], (0, 1), (1, 2), "P1"), rc.RCExample(["c", "d"], (0, 1), (1, 2), "P2")]
        preds = [rc.RCDecoded(g.relation, by_score={"sum": g.relation, "mean": g.relation}) for g in golds]
        metrics = cls("fewrel", family).score(golds, preds)
    else:
        task = load_task(dataset, FIXTURES)
        golds, _ = load_split(dataset, "train", FIXTURES)
        text = task.gold_text if hasattr(task, "gold_text") else task.target
        metrics = task.score(golds, [task.decode(text(ex), ex) for ex in golds])
    scores = {k for k, v in metrics.items() if isinstance(v, float) and ("_f1" in k or "accuracy" in k)}
    declared = set(cls.metrics)
    if family in ("joint_er", "ner") and not task.macro_average:  # macro averages: where the literature has them
        declared -= {"entity_macro_f1", "relation_macro_f1"}
    if family == "ner":
        declared -= {"relation_f1", "relation_f1_no_type"}  # NER has no relations: its scores leave them out
    assert scores == declared
    assert all(metrics[m] == 1.0 for m in declared)
    assert set(cls.metrics) <= set(METRICS)
