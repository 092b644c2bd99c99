"""Greedy decoding that drops finished rows writes what ``model.generate`` writes."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from fishdip.models.generation import generate, greedy_rows, plain_greedy
from tests.conftest import make_tiny_llama, make_tiny_t5

SOURCES = ["John met Mary .", "A much longer sentence about Paris and the people who live there .", "Hi",
           "Lee Harvey Oswald shot John F. Kennedy in Dallas .", "Short one ."]


def left_padded(loaded, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = loaded.tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def reference(model, ids, mask, limits, eos) -> list[list[int]]:
    """model.generate's new tokens (after the prompt, or an encoder-decoder's start token), each row
    cut after its EOS or its own limit."""
    first = 1 if model.config.is_encoder_decoder else ids.shape[1]
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=False,
                         num_beams=1, eos_token_id=eos, pad_token_id=0)[:, first:].tolist()
    rows = []
    for row, limit in zip(out, limits):
        row = row[:limit]
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def test_rows_that_stop_leave_the_batch_and_the_rest_write_what_generate_writes():
    loaded = make_tiny_llama(seed=3)
    model = loaded.model.eval()
    ids, mask = left_padded(loaded, SOURCES)
    limits = [12, 30, 5, 25, 18]
    free = reference(model, ids, mask, limits, eos=-1)  # no EOS: every row runs to its limit
    assert greedy_rows(model, ids, mask, limits, eos_token_id=-1) == free
    # an EOS the random model writes mid-row in some rows and never in others: rows stop at
    # different steps, the batch shrinks several times
    counts = Counter(t for row in free for t in row[1:-1])
    eos = next(t for t, _ in counts.most_common() if sum(t in row for row in free) < len(free))
    expected = reference(model, ids, mask, limits, eos)
    lengths = {len(row) for row in expected}
    assert len(lengths) >= 3 and any(row[-1] == eos for row in expected)
    assert greedy_rows(model, ids, mask, limits, eos_token_id=eos) == expected
    # a stop token (in-context learning's line breaks) ends a row as EOS does
    assert greedy_rows(model, ids, mask, limits, eos_token_id=-1, stops=frozenset({eos})) == expected


def test_unpadded_batch_and_single_row():
    loaded = make_tiny_llama(seed=4)
    model = loaded.model.eval()
    ids, mask = left_padded(loaded, ["abcdef", "ghijkl"])
    assert bool(mask.all())
    assert greedy_rows(model, ids, mask, [7, 3], -1) == reference(model, ids, mask, [7, 3], -1)
    ids, mask = left_padded(loaded, ["one row"])
    assert greedy_rows(model, ids, mask, [9], -1) == reference(model, ids, mask, [9], -1)


def test_a_generation_config_that_changes_the_logits_goes_through_generate(monkeypatch):
    import fishdip.models.generation as t2t

    loaded = make_tiny_llama(seed=5)
    calls = []
    monkeypatch.setattr(t2t, "greedy_rows", lambda *a, **k: calls.append(1) or greedy_rows(*a, **k))
    plain = generate(loaded, SOURCES[:2], max_length=60)
    assert plain_greedy(loaded.model) and calls == [1]
    loaded.model.generation_config.repetition_penalty = 1.3  # a logits processor greedy_rows lacks
    assert not plain_greedy(loaded.model)
    penalised = generate(loaded, SOURCES[:2], max_length=60)
    assert calls == [1] and penalised.texts != plain.texts


def test_encoder_decoder_rows_that_stop_leave_the_batch_and_the_rest_write_what_generate_writes():
    loaded = make_tiny_t5(seed=8)  # a seed whose rows write different tokens (most repeat one)
    model = loaded.model.eval()
    enc = loaded.tokenizer(SOURCES, padding=True, return_tensors="pt")  # right-padded sources
    ids, mask = enc["input_ids"], enc["attention_mask"]
    limits = [12, 30, 5, 25, 18]
    free = reference(model, ids, mask, limits, eos=-1)
    assert greedy_rows(model, ids, mask, limits, eos_token_id=-1) == free
    counts = Counter(t for row in free for t in row[1:-1])
    eos = next(t for t, _ in counts.most_common() if sum(t in row for row in free) < len(free))
    expected = reference(model, ids, mask, limits, eos)
    assert len({len(row) for row in expected}) >= 3 and any(row[-1] == eos for row in expected)
    assert greedy_rows(model, ids, mask, limits, eos_token_id=eos) == expected


@pytest.mark.integration
@pytest.mark.parametrize("decoding", ["free", "constrained", "own-brackets", "annotated-tails"])
def test_copy_ahead_writes_what_greedy_search_writes(decoding):
    """Guesses copied from the prompt, checked in one pass: the rows are greedy search's rows (the
    rejected guesses stay in the cache, masked, and positions continue from the last kept token)."""
    from fishdip.formats.grammar import copy_grammar, decoding_rules

    loaded = make_tiny_llama(seed=3)
    sources = ["Ann lives in Rome .", "Bob works for IBM in New York City .", "a b a b a b a b a b ."]
    grammars = [copy_grammar(s.split(), ["person", "place"], ["live in"], 1, 3) for s in sources] \
        if decoding != "free" else None
    rules = decoding_rules(decoding)
    plain = generate(loaded, sources, 96, grammars=grammars, rules=rules)
    ahead = generate(loaded, sources, 96, grammars=grammars, copy_ahead=4, rules=rules)
    assert ahead.texts == plain.texts and ahead.hit_limit == plain.hit_limit


def test_lookup_proposes_what_follows_the_last_tokens_in_the_prompt():
    from fishdip.models.copy_ahead import lookup

    prompt = [5, 6, 7, 8, 6, 9, 10]
    assert lookup(prompt, [1, 6], 2) == [9, 10]  # the last place 6 occurs
    assert lookup(prompt, [5, 6], 3) == [7, 8, 6]  # two tokens pin it down
    assert lookup(prompt, [42], 3) == [] and lookup(prompt, [], 3) == []
    assert lookup(prompt, [1, 6], 3, end=6) == [9]  # nothing from the end on


class Oracle:
    """Copy-ahead guesses that are greedy search's own next tokens, wrong from the ``wrong``-th on."""

    def __init__(self, rows: list[list[int]], wrong: int):
        self.rows, self.wrong, self.written = rows, wrong, [[] for _ in rows]

    def observe(self, row: int, tokens: list[int]) -> None:
        self.written[row] += tokens

    def guess(self, row: int, width: int) -> list[int]:
        right = self.rows[row][len(self.written[row]):][:width]
        return [t if i < self.wrong else (t + 1) % 100 for i, t in enumerate(right)]


@pytest.mark.parametrize("wrong", [99, 3, 0])
def test_copy_ahead_keeps_agreeing_guesses_and_writes_what_greedy_search_writes(wrong):
    """Whole guesses taken at once (and rejected tails masked out of the cache) give greedy search's rows."""
    from fishdip.models.copy_ahead import copy_ahead_rows

    loaded = make_tiny_llama(seed=3)
    model = loaded.model.eval()
    ids, mask = left_padded(loaded, SOURCES)
    limits = [12, 30, 5, 25, 18]
    eos = loaded.tokenizer.eos_token_id
    expected = greedy_rows(model, ids, mask, limits, eos_token_id=eos)
    assert sum(map(len, expected)) > 40  # long enough for whole guesses to be taken
    assert copy_ahead_rows(model, ids, mask, limits, eos, Oracle(expected, wrong), width=6) == expected
    # a stop token ends a row as EOS does, also inside a block of guesses
    stop = Counter(t for row in expected for t in row[2:-1]).most_common(1)[0][0]
    stopped = greedy_rows(model, ids, mask, limits, eos, stops={stop})
    assert stopped != expected
    assert copy_ahead_rows(model, ids, mask, limits, eos, Oracle(stopped, wrong), 6, stops={stop}) == stopped


def test_drafts_guess_the_sentence_after_a_copy_and_the_batch_s_annotations_after_an_annotation():
    from fishdip.models.copy_ahead import Drafts

    # prompt: cue 1 2, sentence 10..15, cue 3; tokens: 50 "[", 51 "|", 52 "type", 53 "]", 54 "rel", 55 "="
    prompt = [1, 2, 10, 11, 12, 13, 14, 15, 3]
    drafts = Drafts([prompt, prompt], [(1, 8), (1, 8)], eos=0, closes=[53], tails=[55])
    assert drafts.guess(0, 4) == []  # nothing written: no copy position yet
    drafts.observe(0, [10, 11])
    assert drafts.guess(0, 3) == [12, 13, 14]  # copying: the sentence's next tokens
    drafts.observe(0, [50, 12, 51, 52, 53])  # [ 12 | type ]
    assert drafts.guess(0, 9) == [13, 14, 15, 0]  # the copy position stayed; the sentence, then EOS
    drafts.observe(1, [10, 50, 11, 51])  # row 1 opens a group on 11 and writes "|"
    assert drafts.guess(1, 4) == [52, 53, 12, 13]  # what row 0 wrote after "|", then the sentence
    drafts.observe(1, [52, 51, 54, 55])  # type | rel =
    assert drafts.guess(1, 3) == [12, 13, 14]  # no history after "rel =": after the copy position
    drafts.observe(1, [13])  # a tail from further on in the sentence
    assert drafts.guess(1, 3) == [14, 15]  # a longer tail: what follows it in the sentence
    drafts.observe(1, [53])
    assert drafts.guess(1, 2) == [12, 13]  # after the group: copying goes on where it stopped


@pytest.mark.parametrize("prefix", ["", "Sentence: Ann runs .\nAnnotated: [ Ann | person ] runs .\n"])
def test_source_span_is_where_the_sentence_lies_in_the_prompt(prefix):
    from fishdip.models.encoding import PROMPT, prompt_ids, source_span
    from fishdip.models.generation import _with_prefix

    loaded = make_tiny_llama()  # one token per byte: the span is exact up to the token it may start early
    source = "Bob lives in Oslo ."
    prompt = prompt_ids(loaded, source, 256)
    prompt = _with_prefix(loaded, prefix, prompt) if prefix else prompt
    start, end = source_span(loaded, prompt, source)
    assert loaded.tokenizer.decode(prompt[start:end]).strip() == source
    assert loaded.tokenizer.decode(prompt[end:]) == PROMPT.split("{source}")[1]  # the cue after it
