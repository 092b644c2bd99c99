import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from fishdip.data.columns import detect_scheme, entities_to_iob2, read_columns, read_conll, tags_to_entities
from fishdip.data.datasets import CROSSNER_DOMAINS, load_split
from fishdip.errors import DataError
from fishdip.evaluation.metrics import joint_er_scores
from fishdip.formats import entity_relation as er
from tests.conftest import FIXTURES

E = er.Entity


@pytest.mark.parametrize("scheme,tags", [
    ("iob2", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
    ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]),
    ("iobes", ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC"]),
    ("bilou", ["B-PER", "L-PER", "O", "U-LOC", "B-LOC", "L-LOC"]),
])
def test_schemes_give_the_same_spans(scheme, tags):
    assert tags_to_entities(tags, scheme, strict=True) == [E(0, 2, "PER"), E(3, 4, "LOC"), E(4, 6, "LOC")]


@pytest.mark.parametrize("scheme,tags,message", [
    ("iob2", ["O", "I-PER"], "O -> I-PER"),
    ("iob2", ["B-PER", "I-LOC"], "B-PER -> I-LOC"),
    ("iobes", ["B-PER", "O"], "B-PER -> O"),
    ("iobes", ["O", "E-PER"], "O -> E-PER"),
    ("bilou", ["B-PER"], "not closed"),
    ("iob1", ["O", "B-PER"], "O -> B-PER"),
    ("iob2", ["S-PER"], "does not belong"),
])
def test_strict_mode_names_the_line_and_transition(tmp_path, scheme, tags, message):
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(f"w{i} {t}" for i, t in enumerate(tags)) + "\n")
    with pytest.raises(DataError, match=message) as info:
        read_conll(path, scheme, strict=True)
    assert f"{path}: line" in str(info.value)


def test_lenient_mode_repairs_like_conlleval():
    assert tags_to_entities(["O", "I-PER", "I-PER", "I-LOC"], "iob2") == [E(1, 3, "PER"), E(3, 4, "LOC")]


def test_invalid_tag_and_short_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("a O\nb X-PER\n")
    with pytest.raises(DataError, match="line 2: invalid tag 'X-PER'"):
        read_conll(path, "iob2")
    path.write_text("a O\nlonely\n")
    with pytest.raises(DataError, match="line 2: expected 'token ... tag'"):
        read_conll(path, "iob2")


def test_columns_docstart_and_detection(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\n-DOCSTART- -X- O O\n"
                    "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n")
    sentences = read_columns(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.document for s in sentences] == [1, 2] and sentences[1].lines == [7, 8]
    assert detect_scheme(sentences) == "iob1"
    parsed = read_conll(path)
    assert parsed.scheme == "iob1" and parsed.examples[1].entities == [E(0, 2, "PER")]


def _seqeval_check(gold_examples, pred_entities):
    golds = [entities_to_iob2(ex.entities, len(ex.tokens)) for ex in gold_examples]
    preds = [entities_to_iob2(p, len(ex.tokens)) for ex, p in zip(gold_examples, pred_entities)]
    ours = joint_er_scores(gold_examples, [er.Decoded(set(p), set(), {}) for p in pred_entities])
    kw = dict(mode="strict", scheme=IOB2)
    assert ours["entity_precision"] == pytest.approx(precision_score(golds, preds, **kw))
    assert ours["entity_recall"] == pytest.approx(recall_score(golds, preds, **kw))
    assert ours["entity_f1"] == pytest.approx(f1_score(golds, preds, **kw))
    return ours


@pytest.mark.integration
def test_metrics_equal_seqeval_strict_on_perturbed_predictions(data_dir):
    import random

    gold, _ = load_split("wnut17", "dev", data_dir)
    rng = random.Random(0)
    preds = []
    for ex in gold:
        p = []
        for e in ex.entities:
            roll = rng.random()
            if roll < 0.5:
                p.append(e)
            elif roll < 0.7 and e.end < len(ex.tokens):
                p.append(E(e.start, e.end + 1, e.type))  # boundary error
            elif roll < 0.85:
                p.append(E(e.start, e.end, "person" if e.type != "person" else "location"))  # type error
        if rng.random() < 0.1:
            p.append(E(0, 1, "product"))  # spurious
        # drop overlaps so the BIO encoding is faithful
        kept, last_end = [], -1
        for e in sorted(set(p)):
            if e.start >= last_end:
                kept.append(e)
                last_end = e.end
        preds.append(kept)
    ours = _seqeval_check(gold, preds)
    assert 0.3 < ours["entity_f1"] < 0.9
    assert set(ours["per_type"]) >= {"person", "location"}


def test_per_type_scores_hand_computed():
    gold = [er.Example(list("abcd"), [E(0, 1, "PER"), E(2, 3, "LOC")])]
    pred = [er.Decoded({E(0, 1, "PER"), E(2, 3, "PER")}, set(), {})]
    m = joint_er_scores(gold, pred)
    assert m["per_type"]["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_type"]["LOC"]["f1"] == 0.0


@pytest.mark.parametrize("name,sizes", [
    ("wnut17", {"train": 3394, "dev": 1009, "test": 1287}),
    *[(f"crossner_{d}", None) for d in CROSSNER_DOMAINS],
    ("wikigold", None),
])
@pytest.mark.integration
def test_round_trip_every_real_ner_file(data_dir, name, sizes):
    total = 0
    for split in ("train", "dev", "test"):
        examples, schema = load_split(name, split, data_dir)
        if sizes:
            assert len(examples) == sizes[split]
        total += len(examples)
        for ex in examples:
            decoded = er.decode(er.encode(ex, schema), ex.tokens, schema)
            assert decoded.entities == set(ex.entities) and not decoded.errors, ex.id
    if name == "wikigold":
        assert total == 1696


@pytest.mark.integration
def test_wikigold_split_is_deterministic_and_disjoint(data_dir):
    splits = {s: load_split("wikigold", s, data_dir)[0] for s in ("train", "dev", "test")}
    ids = [set(ex.id for ex in splits[s]) for s in splits]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert [ex.id for ex in load_split("wikigold", "dev", data_dir)[0]] == [ex.id for ex in splits["dev"]]
    assert 0.6 < len(splits["train"]) / 1696 < 0.8


def test_crossner_types_have_natural_names(data_dir):
    _, schema = load_split("crossner_ai", "train", data_dir)
    assert schema.entity_types["programlang"] == "programming language"
    assert schema.entity_types["misc"] == "miscellaneous"


@pytest.mark.parametrize("name", ["conll03", "ontonotes", "conll"])
def test_fixture_datasets(name):
    for split in ("train", "dev", "test"):
        examples, schema = load_split(name, split, FIXTURES)
        assert examples
        for ex in examples:
            assert er.decode(er.encode(ex, schema), ex.tokens, schema).entities == set(ex.entities)
