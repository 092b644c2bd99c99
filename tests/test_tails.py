"""The tail rule (formats/tails.py, decoding annotated-tails): every relation tail names one of the
output's bracket groups, and generation under it never reaches a prefix it cannot complete."""

import pytest
import torch

from fishdip.formats import entity_relation as er
from fishdip.formats.grammar import copy_grammar
from fishdip.formats.tails import AnnotatedTails
from fishdip.formats.tanl import parse
from fishdip.models.loading import GenerationBudget
from fishdip.tasks import load_task
from fishdip.tasks.options import GenerationOptions
from tests.conftest import FIXTURES, make_tiny_llama, make_tiny_t5

WORDS = "John works for Acme Corp in Paris .".split()
GOLD = "[ John | person | work for = Acme Corp ] works for [ Acme Corp | organization ] in Paris ."


def test_every_prefix_of_an_output_whose_tails_name_groups_is_accepted():
    rule = AnnotatedTails(tuple(WORDS), 3)
    for text in (GOLD, "John works for [ Acme Corp | org | based in = Paris #1 ] in [ Paris | location ] .",
                 "John works for [ Acme Corp | org | based in = Acme Corp ] in Paris ."):
        encoded = (" " + text).encode()
        assert all(rule.accepts(encoded[:n]) for n in range(len(encoded) + 1)), text


def test_every_prefix_of_every_gold_target_of_the_fixture_is_accepted():
    task = load_task("ade", FIXTURES)
    budget, checked = GenerationBudget(max_relations=4, longest_span=None), 0
    for ex in task.read("train") + task.read("test"):
        rule, gold = task.grammar(ex, budget).tails, (" " + task.target(ex)).encode()
        assert all(rule.accepts(gold[:n]) for n in range(len(gold) + 1)), gold
        checked += bool(ex.relations)
    assert checked >= 3


@pytest.mark.parametrize("prefix", [
    " [ John | person | work for = Acme Corp ] works for Acme",  # its only occurrence copied outside a group
    " [ John | person | work for = Acme Corp ] works for [ Acme Corp in",  # its group grown past it
    " John works for [ Acme Corp | org | based in = John ]",  # a span copied already, not annotated
    " John works for [ Acme Corp | org | based in = Jo",  # the only tail it can become is that one
    " John works for [ Acme Corp | org | based in = in Paris ] in",  # "in" left outside
    " John works for [ Acme Corp | org | based in = Paris ] in Paris",
])
def test_a_prefix_that_leaves_a_tail_without_its_group_is_refused(prefix):
    assert not AnnotatedTails(tuple(WORDS), 3).accepts(prefix.encode())


def test_a_relation_may_begin_only_where_some_tail_can_still_be_named():
    rule = AnnotatedTails(tuple("a b c".split()), 1)
    assert rule.accepts(b" a b [ c | x | r")  # "c" itself
    assert not AnnotatedTails(tuple("a b c".split()), 1).accepts(b" a [ b c | x | r")  # "b c": longer than a tail
    assert rule.accepts(b" [ a | x ] [ b c | x | r = a")


@pytest.mark.parametrize("own_brackets", [False, True])
def test_random_choices_under_the_rule_always_end_with_every_tail_named(own_brackets):
    """A walk with random logits opens groups and names tails at random: each one ends (EOS within
    the grammar's bound), a valid annotation whose every relation finds its tail."""
    from fishdip.models.constrained import GrammarRows

    loaded, task = make_tiny_llama(), load_task("ade", FIXTURES)
    relations = list(task.schema.relation_types.values())
    generator = torch.Generator().manual_seed(0)
    for ex in task.read("test")[:4] * 3:
        grammar = copy_grammar([er.escape(t) for t in ex.tokens], list(task.schema.entity_types.values()),
                               relations, 3, 4)
        rows = GrammarRows(loaded.grammar_tokenizer(), [grammar.lark],
                           loaded.opening_tokens() if own_brackets else None, [grammar.tails])
        vocab = loaded.grammar_tokenizer().vocab_size
        ended = any(int(rows.choose(torch.randn(1, vocab, generator=generator) * 4, [0])[0]) == rows.eos
                    for _ in range(grammar.max_bytes + 1))
        text = rows.written[0].decode()
        decoded = task.decode(text, ex)
        assert ended and not rows.failed and not rows.unmet, text
        assert not decoded.errors, (text, decoded.errors)
        assert " ".join(parse(text).plain.split()) == er.sentence(ex.tokens)


@pytest.mark.integration
@pytest.mark.parametrize("make", [make_tiny_llama, make_tiny_t5], ids=["llama", "t5"])
def test_a_random_model_under_annotated_tails_leaves_no_relation_without_its_tail(make):
    loaded = make()
    loaded.budget = GenerationBudget(max_relations=2, longest_span=3)
    task = load_task("ade", FIXTURES)
    examples = task.read("test")[:6]
    texts, decoded = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding="annotated-tails"),
                                  progress=False)
    for ex, text, pred in zip(examples, texts, decoded):
        assert not pred.errors, (text, pred.errors)
        assert " ".join(parse(text).plain.split()) == er.sentence(ex.tokens)

