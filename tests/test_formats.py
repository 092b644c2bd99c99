from collections import Counter

import pytest

from fishdip.data.datasets import load_split
from fishdip.formats import entity_relation as er
from fishdip.formats.alignment import align
from fishdip.formats.tanl import parse
from tests.conftest import FIXTURES

SCHEMA = er.Schema({"Peop": "people", "Loc": "location", "Org": "organization"},
                   {"Kill": "kill", "Live_In": "live in"})
TOKENS = "John Wilkes Booth , who assassinated President Lincoln , was from the U.S .".split()
BOOTH, LINCOLN, US = er.Entity(0, 3, "Peop"), er.Entity(6, 8, "Peop"), er.Entity(12, 13, "Loc")
GOLD = er.Example(TOKENS, [BOOTH, LINCOLN, US],
                  [er.Relation("Kill", BOOTH, LINCOLN), er.Relation("Live_In", BOOTH, US)])


def test_encode_matches_tanl_format():
    assert er.encode(GOLD, SCHEMA) == (
        "[ John Wilkes Booth | people | kill = President Lincoln | live in = U.S ] , who assassinated "
        "[ President Lincoln | people ] , was from the [ U.S | location ] ."
    )


@pytest.mark.parametrize("split", ["train", "dev", "test"])
@pytest.mark.integration
def test_round_trip_every_conll04_example(data_dir, split):
    examples, schema = load_split("conll04", split, data_dir)
    assert len(examples) == {"train": 922, "dev": 231, "test": 288}[split]
    for ex in examples:
        decoded = er.decode(er.encode(ex, schema), ex.tokens, schema)
        assert decoded.entities == set(ex.entities), ex.id
        assert decoded.relations == set(ex.relations), ex.id
        assert not decoded.errors, ex.id


@pytest.mark.parametrize("fold", [0, 1])
def test_round_trip_ade_fixture_folds(fold):
    for split in ("train", "test"):
        examples, schema = load_split("ade", split, FIXTURES, fold=fold)
        assert examples
        for ex in examples:
            decoded = er.decode(er.encode(ex, schema), ex.tokens, schema)
            assert (decoded.entities, decoded.relations) == (set(ex.entities), set(ex.relations))


def test_ambiguous_tail_uses_nearest_then_ordinal():
    tokens = "Paris , Paris , and Acme of Paris".split()
    p0, p2, acme, p7 = (er.Entity(0, 1, "Loc"), er.Entity(2, 3, "Loc"), er.Entity(5, 6, "Org"),
                        er.Entity(7, 8, "Loc"))
    schema = er.Schema({"Loc": "location", "Org": "organization"}, {"In": "based in"})
    ex = er.Example(tokens, [p0, p2, acme, p7], [er.Relation("In", acme, p7), er.Relation("In", acme, p0)])
    text = er.encode(ex, schema)
    # the nearest Paris (p7) needs no number; p0 is the first of three
    assert "[ Acme | organization | based in = Paris #1 | based in = Paris ]" in text
    decoded = er.decode(text, tokens, schema)
    assert decoded.relations == set(ex.relations)
    # without a number, the nearest candidate wins
    plain = er.decode("[ Paris | location ] , [ Paris | location ] , and [ Acme | organization | "
                      "based in = Paris ] of [ Paris | location ]", tokens, schema)
    assert plain.relations == {er.Relation("In", acme, p7)}


def test_tokens_with_bracket_characters_are_escaped():
    tokens = ["a", "[", "b", "|", "c", "]"]
    ex = er.Example(tokens, [er.Entity(2, 3, "Loc")])
    schema = er.Schema({"Loc": "location"})
    text = er.encode(ex, schema)
    assert text == "a ( [ b | location ] / c )"
    assert er.decode(text, tokens, schema).entities == {er.Entity(2, 3, "Loc")}


def test_alignment_tolerates_detokenization_case_and_typos():
    tokens = "He moved to the U.S . in 1990".split()
    assert align("he moved to the us. in 1990", tokens).token_span(16, 19) == (4, 6)
    decoded = er.decode("He moved to the [ U.S. | location ] in 1990", tokens, SCHEMA)
    assert decoded.entities == {er.Entity(4, 6, "Loc")}
    decoded = er.decode("He moovd to the [ U.S. | location ] in 1990", tokens, SCHEMA)
    assert decoded.entities == {er.Entity(4, 6, "Loc")}


MALFORMED = [
    ("[ John Wilkes Booth | people , who", {"format_error": 1}),
    ("John ] Wilkes [ Booth | people ]", {"format_error": 1}),
    ("[ John | people [ Lincoln | people ]", {"format_error": 1}),
    ("[ John Wilkes Booth | wizard ] , who", {"unknown_entity_type": 1}),
    ("[ John Wilkes Booth ] , who", {"missing_type": 1}),
    ("[ John Wilkes Booth | people | kill = Nobody ] , who", {"missing_tail": 1}),
    ("[ John Wilkes Booth | people | hates = President Lincoln ] [ President Lincoln | people ]",
     {"unknown_relation_type": 1}),
    ("[ John Wilkes Booth | people | kill ]", {"malformed_relation": 1}),
    ("[ zzzzzz | people ]", {"unaligned_entity": 1}),
    ("[ | people ]", {"format_error": 1}),
    ("]]][[[|||===", None),
    ("", {}),
]


@pytest.mark.parametrize("text,expected", MALFORMED)
def test_malformed_output_is_counted_not_raised(text, expected):
    decoded = er.decode(text, TOKENS, SCHEMA)
    if expected is not None:
        assert decoded.errors == Counter(expected)
    assert isinstance(decoded.entities, set)


def test_unbalanced_bracket_keeps_other_entities():
    decoded = er.decode("[ John Wilkes Booth | people , who [ President Lincoln | people ]", TOKENS, SCHEMA)
    assert decoded.entities == {LINCOLN}
    assert decoded.errors["format_error"] == 1


def test_entity_without_any_aligned_character():
    decoded = er.decode("[ !!! | people ]", ["a", "b"], SCHEMA)
    assert decoded.errors == Counter({"unaligned_entity": 1})


def test_parse_plain_offsets():
    parsed = parse("x [ a b | t | r = y ] z")
    assert parsed.plain == "x a b z"
    (bracket,) = parsed.brackets
    assert parsed.plain[bracket.start : bracket.end] == "a b" and bracket.fields == ["t", "r = y"]
