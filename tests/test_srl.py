import pytest

from fishdip.data.datasets import load_split, srl_label_name
from fishdip.data.srl import normalize_label, read_srl
from fishdip.errors import DataError
from fishdip.formats import entity_relation as er
from fishdip.formats.entity_relation import Entity as E
from fishdip.tasks import load_task
from tests.conftest import FIXTURES


def test_label_normalisation_and_names():
    assert [normalize_label(x) for x in ("A0", "AM-TMP", "R-A1", "C-A0", "ARG2", "AA")] == \
        ["ARG0", "ARGM-TMP", "R-ARG1", "C-ARG0", "ARG2", "ARGA"]
    assert srl_label_name("ARG0") == "first argument" and srl_label_name("ARG1") == "second argument"
    assert srl_label_name("R-ARG0") == "reference to first argument"
    assert srl_label_name("ARGM-TMP") == "argm-tmp"


def test_conll05_columns_one_example_per_predicate():
    examples = read_srl(FIXTURES / "conll05" / "train.txt")
    assert [ex.predicate for ex in examples] == [2, 1, 3]
    said, left = examples[1], examples[2]
    assert said.entities == [E(0, 1, "ARG0"), E(2, 5, "ARG1")]
    assert left.entities == [E(2, 3, "ARG0"), E(4, 5, "ARGM-TMP")]


def test_line_format_with_and_without_index():
    a, b = read_srl(FIXTURES / "conll05" / "dev.txt")
    assert a.predicate == 2 and a.entities == [E(0, 2, "ARG0"), E(3, 6, "ARGM-LOC")]
    assert b.predicate == 1 and b.tokens == ["Prices", "rose", "sharply", "."]


def test_conll12_gold_conll_layout():
    examples = read_srl(FIXTURES / "conll12" / "train.gold_conll")
    assert [ex.predicate for ex in examples] == [1, 3]
    assert examples[0].entities == [E(0, 1, "ARG0"), E(2, 5, "ARG1")]


@pytest.mark.parametrize("text,message", [
    ("w1 w2 ||| O\n", "line 1: 2 words but 1 tags"),
    ("w1 w2 ||| O O\n", "no predicate"),
    ("a  x  (A0*\nb  -  *\n", "never closed"),
    ("a  x  (A0*)\nb  -  *)\n", "closes no argument"),
])
def test_bad_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_srl(path)


@pytest.mark.parametrize("name", ["conll05", "conll12"])
def test_srl_round_trip_and_metric(name):
    task = load_task(name, FIXTURES)
    for split in ("train", "dev", "test"):
        examples, _ = load_split(name, split, FIXTURES)
        for ex in examples:
            assert "[ " + ex.tokens[ex.predicate] + " ]" in task.source(ex)
            decoded = task.decode(task.target(ex), ex)
            assert decoded.entities == set(ex.entities) and not decoded.errors
    examples, _ = load_split(name, "train", FIXTURES)
    # hand-computed: drop one argument of the first example, mislabel one of the second
    preds = [er.Decoded(set(examples[0].entities[1:]), set(), {}),
             er.Decoded({E(a.start, a.end, "ARG5") for a in examples[1].entities[:1]} |
                        set(examples[1].entities[1:]), set(), {})]
    gold_n = len(examples[0].entities) + len(examples[1].entities)
    pred_n = len(preds[0].entities) + len(preds[1].entities)
    m = task.score(examples[:2], preds)
    correct = len(examples[0].entities) - 1 + len(examples[1].entities) - 1
    assert m["argument_precision"] == pytest.approx(correct / pred_n)
    assert m["argument_recall"] == pytest.approx(correct / gold_n)
    assert not any(k.startswith("entity_") or k.startswith("relation_") for k in m)
