"""Alignment that never stretches a span, TANL's decoding rules, and their agreement."""

import json
import random
import re
from difflib import SequenceMatcher

import pytest

from fishdip.data.datasets import load_split
from fishdip.formats import entity_relation as er
from fishdip.formats import tanl_decoder
from fishdip.formats.alignment import align
from fishdip.formats.decoders import DECODERS, get_decoder
from fishdip.formats.tanl import parse
from fishdip.tasks import load_task
from tests.conftest import FIXTURES, REPO

SCHEMA = er.Schema({"Peop": "people", "Loc": "location", "Org": "organization"},
                   {"Kill": "kill", "Live_In": "live in"})
MAIN_JOB = REPO / "docs" / "results" / "conll04-main"


def spans(output: str, tokens: list[str]) -> list[tuple[str, tuple[int, int] | None]]:
    parsed = parse(output)
    alignment = align(parsed.plain, tokens, {o for b in parsed.brackets for o in (b.start, b.end)})
    return [(b.text, alignment.token_span(b.start, b.end)) for b in parsed.brackets]


def test_span_does_not_stretch_over_words_the_model_left_out():
    tokens = "Reagan claimed had prevented his administration from balancing the federal budget .".split()
    assert spans("[ Reagan | people ] .", tokens) == [("Reagan", (0, 1))]
    decoded = er.decode("[ Reagan | people ] .", tokens, SCHEMA)
    assert decoded.entities == {er.Entity(0, 1, "Peop")}


@pytest.mark.parametrize("output, tokens, expected", [
    ("[ U.S. | location ] troops", ["U.S", ".", "troops"], (0, 2)),  # detokenized: one word, two tokens
    ("[ U.S | location ] .", ["U.S."], (0, 1)),  # retokenized: two words, one token
    ("he lives in the [ us. | location ]", "he lives in the U.S .".split(), (4, 6)),  # and re-cased
    ("[ Jon Smit | people ] said", ["John", "Smith", "said"], (0, 2)),  # misspelled copy
    ("[ New York - based | organization ] firm", ["New", "York-based", "firm"], (0, 2)),
    ("[ John Smith | people ] spoke", ["John", "A.", "Smith", "spoke"], (0, 3)),  # a word left out inside
])
def test_alignment_keeps_what_a_copy_can_look_like(output, tokens, expected):
    assert spans(output, tokens)[0][1] == expected


def test_repeated_words_land_on_one_contiguous_stretch():
    tokens = "the dog saw the cat and the dog ran".split()
    assert spans("[ the dog | people ] ran", tokens) == [("the dog", (6, 8))]
    assert spans("the dog saw [ the cat | people ]", tokens) == [("the cat", (3, 5))]


def test_invented_text_is_not_an_entity():
    assert spans("[ Foo | people ] said", ["John", "Smith", "said"]) == [("Foo", None)]
    decoded = er.decode("[ Foo | people ] said", ["John", "Smith", "said"], SCHEMA)
    assert not decoded.entities and decoded.errors["unaligned_entity"] == 1


def _noisy_copy(example: er.Example, schema: er.Schema, rng: random.Random,
                vocabulary: list[str]) -> tuple[str, set[er.Entity]]:
    """Gold text with words outside entities deleted, inserted or replaced; the entities kept."""
    inside = {i for e in example.entities for i in range(e.start, e.end)}
    starts = {e.start: e for e in example.entities}
    words, kept, i = [], set(), 0
    while i < len(example.tokens):
        if i in starts:
            entity = starts[i]
            text = er.sentence(example.tokens[entity.start:entity.end])
            words.append(f"[ {text} | {schema.entity_types[entity.type]} ]")
            kept.add(entity)
            i = entity.end
            continue
        roll = rng.random()
        if i not in inside and roll < 0.15:
            pass  # deleted
        elif i not in inside and roll < 0.25:
            words.append(rng.choice(vocabulary))  # replaced
        else:
            words.append(er.escape(example.tokens[i]))
        if rng.random() < 0.08:
            words.append(rng.choice(vocabulary))  # inserted
        i += 1
    return " ".join(words), kept


@pytest.mark.integration
def test_noise_around_entities_never_moves_or_stretches_them(data_dir):
    examples, schema = load_split("conll04", "test", data_dir)
    rng = random.Random(0)
    vocabulary = ["zebra", "quantum", "blue", "of", "the", ",", "walked", "Paris"]
    checked = 0
    for ex in examples:
        # an entity whose text occurs twice in the sentence is ambiguous once words go missing
        texts = [" ".join(ex.tokens[e.start:e.end]) for e in ex.entities]
        if len(set(texts)) < len(texts) or any(" ".join(ex.tokens).count(t) > 1 for t in texts):
            continue
        for _ in range(3):
            noisy, kept = _noisy_copy(ex, schema, rng, vocabulary)
            decoded = er.decode(noisy, ex.tokens, schema)
            assert decoded.entities == kept, (noisy, ex.tokens)
            checked += 1
    assert checked > 600


@pytest.mark.parametrize("dataset, folder", [
    ("conll04", None), ("wnut17", None), ("crossner_ai", None), ("crossner_music", None),
    ("crossner_politics", None), ("crossner_science", None), ("crossner_literature", None), ("wikigold", None),
    ("ade", FIXTURES), ("conll03", FIXTURES), ("ontonotes", FIXTURES), ("conll05", FIXTURES),
    ("conll12", FIXTURES),
])
@pytest.mark.integration
def test_both_decoders_read_every_gold_target_exactly(dataset, folder, request):
    if folder is None:
        folder = request.getfixturevalue("data_dir")
    task = load_task(dataset, folder)
    splits = ["train", "test"] if dataset == "ade" else ["train", "dev", "test"]
    for split in splits:
        examples, _ = load_split(dataset, split, folder)
        for ex in examples:
            target = task.target(ex)
            for name, decode in DECODERS.items():
                decoded = decode(target, ex.tokens, task.schema)
                assert decoded.entities == set(ex.entities), (name, target)
                assert decoded.relations == set(getattr(ex, "relations", [])), (name, target)
                assert not decoded.errors, (name, target, decoded.errors)


def test_both_decoders_read_event_gold_text():
    for decoder in DECODERS:
        task = load_task("ace2005event", FIXTURES, decoder)
        examples, _ = load_split("ace2005event", "train", FIXTURES)
        for ex in examples:
            decoded = task.decode(task.gold_text(ex), ex)
            assert decoded.triggers == set(ex.triggers) and decoded.arguments == set(ex.arguments), decoder


def test_tanl_parser_rules():
    words, raw = tanl_decoder.parse("[ Tolkien | person ] wrote [ The Lord | book | author = Tolkien ] ]")
    assert words == ["Tolkien", "wrote", "The", "Lord", "]"]  # a stray "]" is an ordinary word
    assert raw == [("Tolkien", [("person",)], 0, 1), ("The Lord", [("book",), ("author", "Tolkien")], 2, 4)]
    assert tanl_decoder.parse("a [ b | x")[1] == []  # a bracket left open is dropped


def test_tanl_decoder_matches_tanl_on_ambiguous_tails_and_unequal_words():
    tokens = "Smith met Smith and Jones".split()
    schema = er.Schema({"Peop": "people"}, {"Kill": "kill"})
    text = "[ Smith | people | kill = Jones ] met [ Smith | people | kill = Smith ] and [ Jones | people ]"
    decoded = tanl_decoder.decode(text, tokens, schema)
    first, second, jones = er.Entity(0, 1, "Peop"), er.Entity(2, 3, "Peop"), er.Entity(4, 5, "Peop")
    # the tail "Smith" of the second Smith: both Smiths are 1 token away (gap between spans);
    # the tie goes to the one written first, as TANL's stable sort does
    assert decoded.relations == {er.Relation("Kill", first, jones), er.Relation("Kill", second, first)}
    # TANL compares words exactly: a re-cased copy is an unequal pair, still aligned by position
    assert tanl_decoder.decode("[ smith | people ] met Smith and Jones", tokens, schema).entities == {first}


@pytest.mark.integration
def test_decoders_agree_on_noisy_copies_where_tanl_is_unambiguous(data_dir):
    """Deleted words only (no substitutions, no re-casing) and entity texts unique in the sentence:
    TANL's rules have one answer, and ours must give the same."""
    examples = [ex for split in ("train", "dev", "test") for ex in load_split("conll04", split, data_dir)[0]]
    schema = load_task("conll04", data_dir).schema
    rng = random.Random(1)
    compared = 0
    for ex in examples:
        if len(set(ex.tokens)) < len(ex.tokens):
            continue
        target = er.encode(ex, schema)
        words = target.split(" ")
        # delete a few words that are outside brackets
        depth, outside = 0, []
        for i, w in enumerate(words):
            depth += w == "["
            if depth == 0 and w not in ("[", "]"):
                outside.append(i)
            depth -= w == "]"
        drop = set(rng.sample(outside, min(len(outside), 2)))
        noisy = " ".join(w for i, w in enumerate(words) if i not in drop)
        ours, theirs = er.decode(noisy, ex.tokens, schema), tanl_decoder.decode(noisy, ex.tokens, schema)
        assert ours.entities == theirs.entities and ours.relations == theirs.relations, noisy
        compared += 1
    assert compared > 250


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _token_is_in(token: str, text: str) -> bool:
    """The token's letters and digits occur in the bracket text, or a word there is close to it
    (an independent yardstick: difflib's ratio, not the aligner's own costs)."""
    t = _norm(token)
    return not t or t in _norm(text) or any(SequenceMatcher(None, _norm(w), t).ratio() >= 0.6
                                            for w in text.split())


@pytest.mark.skipif(not (MAIN_JOB / "full" / "predictions.jsonl").is_file(), reason="main job results not stored")
@pytest.mark.parametrize("method", ["full", "fish-dip"])
@pytest.mark.integration
def test_main_job_generations_give_no_stretched_span(method, data_dir):
    """On the README main job's real generations, both ends of every predicted span are input
    tokens that the bracket's own text contains (the old character alignment broke this 14 and
    18 times)."""
    rows = [json.loads(line) for line in (MAIN_JOB / method / "predictions.jsonl").read_text().splitlines()]
    examples, _ = load_split("conll04", "test", data_dir)
    by_id = {ex.id: ex for ex in examples}
    checked = 0
    for row in rows:
        tokens = [er.escape(t) for t in by_id[row["id"]].tokens]
        for text, span in spans(row["generated"], tokens):
            if span is None:
                continue
            assert _token_is_in(tokens[span[0]], text) and _token_is_in(tokens[span[1] - 1], text), (text, span)
            checked += 1
    assert checked > 250


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="unknown decoder"):
        get_decoder("spacy")
