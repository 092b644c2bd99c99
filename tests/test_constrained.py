"""Constrained decoding: the grammar of a copy family admits every gold target and nothing that is not
a valid annotation of its input; a constrained model, even a random one, writes only valid outputs."""

import json

import pytest
import torch

from fishdip.errors import FishdipError
from fishdip.formats import entity_relation as er
from fishdip.formats import events as ev
from fishdip.formats.grammar import copy_grammar
from fishdip.formats.tanl import parse
from fishdip.models.encoding import budget_from_pairs
from fishdip.models.generation import generate
from fishdip.models.loading import GenerationBudget
from fishdip.options import ConfigError
from fishdip.tasks import load_task
from fishdip.tasks.options import GenerationOptions
from tests.conftest import FIXTURES, make_tiny_llama, make_tiny_t5

# one dataset of every copy family, in its real format (tests/fixtures)
COPY_FAMILIES = {"ner": "conll03", "joint_er": "ade", "srl": "conll05", "event": "ace2005event"}
WIDE = GenerationBudget(max_relations=4, longest_span=None)  # limits that admit every gold target


def _accepts(loaded, grammar, text: str) -> bool:
    import llguidance

    matcher = llguidance.LLMatcher(loaded.grammar_tokenizer(), grammar.lark, log_level=0)
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"] + [loaded.tokenizer.eos_token_id]
    return matcher.consume_tokens(ids) and matcher.is_stopped() and not matcher.is_error()


def _gold_outputs(family: str):
    """(grammar, gold output) of every example of the family's fixture, each pass of events."""
    task = load_task(COPY_FAMILIES[family], FIXTURES)
    examples = task.read("train") + task.read("test")
    for ex in examples:
        if family == "event":
            yield task.grammar(ex, WIDE), task.target(ex)
            roles = list(task.roles.entity_types.values())
            for trigger in ex.triggers:
                args = task._arguments_of(ex, trigger)
                yield (copy_grammar([er.escape(t) for t in ex.tokens], roles),
                       ev.argument_target(ex.tokens, args, task.roles))
        else:
            yield task.grammar(ex, WIDE), task.target(ex)


@pytest.mark.parametrize("family", COPY_FAMILIES)
def test_every_gold_target_of_every_copy_family_is_in_its_grammar(family):
    loaded = make_tiny_llama()
    checked = 0
    for grammar, gold in _gold_outputs(family):
        assert _accepts(loaded, grammar, " " + gold), gold
        checked += 1
    assert checked >= 3


WORDS = "John Smith works for Acme Corp in Boston .".split()
TYPES, RELATIONS = ["person", "organization", "location"], ["work for", "live in"]


@pytest.mark.parametrize("text, valid", [
    ("John Smith works for Acme Corp in Boston .", True),
    ("[ John Smith | person | work for = Acme Corp ] works for [ Acme Corp | organization ] in Boston .", True),
    ("John Smith works for Acme Corp in Boston", False),  # a word left out
    ("John Smith works for Acme Corp in Boston . .", False),  # a word twice
    ("Smith John works for Acme Corp in Boston .", False),  # out of order
    ("[ John Smith | human ] works for Acme Corp in Boston .", False),  # not a type of the schema
    ("[ John Smith | person | likes = Acme Corp ] works for Acme Corp in Boston .", False),  # not a relation
    ("[ John Smith | person | work for = Acme Inc ] works for Acme Corp in Boston .", False),  # tail not in input
    ("[ John [ Smith | person ] | person ] works for Acme Corp in Boston .", False),  # nested
    ("[ John Smith | person works for Acme Corp in Boston .", False),  # never closed
    ("[ John Smith ] works for Acme Corp in Boston .", False),  # no type
])
def test_the_grammar_admits_valid_annotations_only(text, valid):
    grammar = copy_grammar(WORDS, TYPES, RELATIONS, max_relations=2, longest_tail=3)
    assert _accepts(make_tiny_llama(), grammar, " " + text) is valid


def test_the_limits_come_from_the_training_targets_and_bound_the_output():
    loaded = make_tiny_llama()
    pairs = [("a b c d .", "[ a b | person | work for = c d ] [ c d | organization ] ."),
             ("x y .", "[ x | person | work for = y | live in = y ] [ y | location ] .")]
    budget = budget_from_pairs(loaded, pairs)
    assert (budget.max_relations, budget.longest_span) == (2, 2)
    grammar = copy_grammar(WORDS, TYPES, RELATIONS, budget.max_relations, budget.longest_span)
    three = ("[ John | person | work for = Acme | work for = Acme | work for = Acme ] Smith works for Acme Corp in "
             "Boston .")
    assert not _accepts(loaded, grammar, " " + three)  # 3 relations: more than any training target holds
    longest = " ".join(f"[ {w} | organization | work for = works for | work for = works for ]" for w in WORDS)
    assert _accepts(loaded, grammar, " " + longest) and len((" " + longest).encode()) <= grammar.max_bytes


@pytest.mark.integration
@pytest.mark.parametrize("make", [make_tiny_llama, make_tiny_t5], ids=["llama", "t5"])
@pytest.mark.parametrize("family", COPY_FAMILIES)
def test_a_random_model_constrained_writes_only_valid_annotations_of_its_input(family, make):
    """The targets: no text outside the input, no unknown type or relation, nothing cut at the budget;
    every output a copy of its input word for word once the annotations are stripped."""
    loaded = make()
    loaded.budget = GenerationBudget(max_relations=2, longest_span=3)
    task = load_task(COPY_FAMILIES[family], FIXTURES)
    examples = task.read("test")[:6]
    texts, decoded = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding="constrained"),
                                  progress=False)
    for ex, text, pred in zip(examples, texts, decoded):
        forbidden = {"unaligned_entity", "unknown_entity_type", "unknown_relation_type", "generation_limit",
                     "missing_type", "format_error", "malformed_relation"}
        assert not forbidden & set(pred.errors), (text, pred.errors)
        for part in text.split(" || "):  # events: the trigger pass, then one argument pass per trigger
            plain = " ".join(parse(part).plain.split())
            assert plain == er.sentence(ex.tokens), (part, ex.tokens)


@pytest.mark.parametrize("top, constrained, own_brackets", [
    ("P", "[", "J"),  # the model's own choice is refused: constrained opens a group, own-brackets copies on
    ("[", "[", "["),  # the model opens a group itself: both follow it
    ("J", "J", "J"),
])
def test_own_brackets_opens_a_group_only_where_the_model_itself_opens_one(top, constrained, own_brackets):
    from fishdip.models.constrained import GrammarRows

    loaded = make_tiny_llama()  # one token per byte
    tok, lark = loaded.tokenizer, copy_grammar(["John", "runs"], TYPES).lark
    logits = torch.zeros(1, loaded.model.get_output_embeddings().weight.shape[0])
    for byte, value in [("P", 7.0), ("[", 6.0), ("J", 5.0)]:  # " " (allowed) stays at 0
        logits[0, tok.convert_tokens_to_ids(byte)] = value
    logits[0, tok.convert_tokens_to_ids(top)] = 10.0
    for opens, expected in [(None, constrained), (loaded.opening_tokens(), own_brackets)]:
        rows = GrammarRows(loaded.grammar_tokenizer(), [lark], opens)
        assert tok.convert_ids_to_tokens(int(rows.choose(logits.clone(), [0])[0])) == expected
    assert loaded.opening_tokens().sum() == 1  # bytes: "[" alone holds the mark


def test_copy_ahead_takes_guesses_that_are_the_top_token_and_allowed_without_a_mask():
    from fishdip.models.constrained import GrammarRows

    loaded = make_tiny_llama()  # one token per byte
    ids = lambda text: loaded.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    lark = copy_grammar(["John", "runs"], TYPES).lark
    for guess, top, expected, rest in [(" John runs", " John runs", 10, []), (" John runs", " Jo", 3, ids("hn runs")),
                                       (" Jxhn runs", " Jxhn runs", 2, ids("ohn runs"))]:  # "x": not allowed
        rows = GrammarRows(loaded.grammar_tokenizer(), [lark])
        assert rows.agreeing(0, ids(guess), ids(top) + [0] * 10) == expected
        matcher = rows.matchers[0]  # it consumed what it agreed to: the rest of the sentence completes it
        assert (not rest or matcher.consume_tokens(rest)) and matcher.is_accepting()


@pytest.mark.integration
@pytest.mark.parametrize("make", [make_tiny_llama, make_tiny_t5], ids=["llama", "t5"])
def test_own_brackets_writes_only_valid_annotations_too(make):
    loaded = make()
    task = load_task("ade", FIXTURES)
    examples = task.read("test")[:4]
    texts, decoded = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding="own-brackets"),
                                  progress=False)
    for ex, text, pred in zip(examples, texts, decoded):
        assert not {"unaligned_entity", "unknown_entity_type", "generation_limit"} & set(pred.errors), text
        assert " ".join(parse(text).plain.split()) == er.sentence(ex.tokens)


@pytest.mark.integration
def test_in_context_learning_runs_constrained_in_the_own_loop(monkeypatch):
    from fishdip.evaluation.icl import Demonstrations

    loaded = make_tiny_llama()
    demos = Demonstrations(loaded, [("Ann lives in Rome .", "[ Ann | person ] lives in [ Rome | location ] .")], 500)
    monkeypatch.setattr(loaded.model, "generate", lambda **_: pytest.fail("model.generate ran"))
    source = "Bob lives in Oslo ."
    out = generate(loaded, [source], 64, prefixes=[demos.prefix(source)], context_tokens=500,
                   grammars=[copy_grammar(source.split(), TYPES)])
    assert " ".join(parse(out.texts[0]).plain.split()) == source and out.hit_limit == [False]


def test_beams_and_families_without_a_grammar_are_refused_with_one_line(tmp_path):
    with pytest.raises(FishdipError, match="--decoding constrained runs greedy search; use --num-beams 1"):
        generate(make_tiny_t5(), ["a b ."], 32, num_beams=2, grammars=[copy_grammar(["a", "b", "."], TYPES)])
    from fishdip.runs.config import configs_from_options

    with pytest.raises(ConfigError, match="--decoding constrained: fewrel's outputs have no grammar here"):
        configs_from_options({"task": "fewrel", "decoding": "constrained", "output_dir": str(tmp_path)})


def test_auto_decodes_with_annotated_tails_where_there_is_a_grammar_and_records_what_ran(tmp_path):
    from fishdip.runs.config import ExperimentConfig, configs_from_options

    def decoding(**options):
        return configs_from_options({"output_dir": str(tmp_path), **options})[0].decoding

    assert GenerationOptions().decoding == "auto"
    assert decoding(task="conll04") == "annotated-tails"
    assert decoding(task="conll04", num_beams=3) == "free"  # beams run free decoding
    assert decoding(task="conll04", decoding="constrained") == "constrained"
    assert decoding(task="fewrel") == "free"  # scored by candidate losses: no grammar
    assert decoding(task="conll05") == "annotated-tails"
    # a run recorded before the option existed decoded freely, whatever today's default
    cfg = configs_from_options({"task": "conll04", "output_dir": str(tmp_path)})[0]
    recorded = {k: v for k, v in cfg.to_dict().items() if k != "decoding"}
    assert ExperimentConfig.from_dict(recorded).decoding == "free"
    assert ExperimentConfig.from_dict(cfg.to_dict()).decoding == "annotated-tails"


def test_a_task_resolves_auto_when_it_generates(monkeypatch):
    from fishdip.evaluation import predict as predict_module

    seen = []

    def generate_sorted(loaded, sources, batch_size, max_length, num_beams, progress, desc, demonstrations,
                        grammars, copy_ahead, rules, journal=None):  # records (constrained, its rules)
        seen.append((grammars is not None, rules.own_brackets, rules.annotated_tails))
        return predict_module.Generated(["a ."], [False])

    monkeypatch.setattr(predict_module, "generate_sorted", generate_sorted)
    task, loaded = load_task("ade", FIXTURES), make_tiny_llama()
    example = er.Example(["a", "."])
    for decoding, expected in (("auto", (True, True, True)), ("free", (False, False, False)),
                               ("constrained", (True, False, False)), ("annotated-tails", (True, True, True))):
        seen.clear()
        task.predict(loaded, [example], GenerationOptions(max_length=32, decoding=decoding), progress=False)
        assert seen == [expected], decoding


# -- dialogue state tracking: slot names from the schema, in the order dst.encode writes them ------
def test_every_gold_belief_state_of_the_fixture_is_in_the_dst_grammar():
    from fishdip.data.multiwoz import read_multiwoz
    from fishdip.formats import dst

    loaded, grammar = make_tiny_llama(), dst.belief_grammar()
    examples = read_multiwoz(FIXTURES / "multiwoz21" / "train_dials.json")
    assert any(ex.belief for ex in examples)
    for ex in examples:
        assert _accepts(loaded, grammar, " " + dst.encode(ex.belief)), dst.encode(ex.belief)


TAXI = "taxi arrive by 17:30 , taxi departure none , taxi destination none , taxi leave at none"


@pytest.mark.parametrize("text, valid", [
    ("[belief] [belief]", True),
    (f"[belief] {TAXI} [belief]", True),
    (f"[belief] {TAXI.replace('17:30', 'the cambridge chop house')} [belief]", True),  # values are free words
    ("[belief] taxi arrive by 17:30 [belief]", False),  # an active domain writes every slot
    (f"[belief] {TAXI.replace('arrive by', 'arrival')} [belief]", False),  # not a slot of the schema
    (f"[belief] {TAXI.replace('taxi', 'bus')} [belief]", False),  # not a domain
    ("[belief] taxi departure none , taxi arrive by 17:30 , taxi destination none , taxi leave at none [belief]",
     False),  # slots out of order
    (f"[belief] {TAXI} , attraction area none , attraction name none , attraction type none [belief]",
     False),  # domains out of order
    (f"[belief] {TAXI.replace('17:30', '17,30')} [belief]", False),  # a comma separates slots only
    (f"[belief] {TAXI}", False),  # never closed
])
def test_the_dst_grammar_admits_belief_states_of_the_schema_only(text, valid):
    from fishdip.formats import dst

    assert _accepts(make_tiny_llama(), dst.belief_grammar(), " " + text) is valid


@pytest.mark.integration
@pytest.mark.parametrize("decoding", ["constrained", "own-brackets", "annotated-tails"])
def test_a_random_model_constrained_writes_only_belief_states_of_the_schema(decoding):
    loaded = make_tiny_llama()
    task = load_task("multiwoz21", FIXTURES)
    examples = task.read("test")[:3]
    texts, decoded = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding=decoding),
                                  progress=False)
    for text, pred in zip(texts, decoded):
        assert not pred.errors, (text, pred.errors)  # no format error, unknown domain or slot, empty value
        assert text.startswith("[belief]") and text.endswith("[belief]")


@pytest.mark.integration
def test_a_constrained_run_records_its_decoding_and_writes_valid_outputs(tmp_path, tiny_model_dir):
    from fishdip.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "ade", "--data-dir", str(FIXTURES), "--model", str(tiny_model_dir), "--method", "full",
              "--epochs", "1", "--train-size", "4", "--eval-limit", "4", "--max-length", "64",
              "--decoding", "constrained", "--output-dir", str(out), "--quiet"])
    assert exit_info.value.code in (0, None)
    assert json.loads((out / "config.json").read_text())["decoding"] == "constrained"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows and all("generation_limit" not in r["errors"] and "unaligned_entity" not in r["errors"] for r in rows)
    # evaluate and predict decode constrained too; rescore cannot (it has no model), and says so
    for argv in (["evaluate", "--model", str(out), "--data-dir", str(FIXTURES), "--eval-limit", "2", "--decoding",
                  "constrained"],
                 ["predict", "--model", str(out), "--decoding", "constrained", "Aspirin caused a rash ."]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code in (0, None), argv
    with pytest.raises(SystemExit) as exit_info:
        main(["rescore", str(out), "--decoding", "constrained"])
    assert exit_info.value.code == 2
    import fishdip

    row = fishdip.load(out).predict("Aspirin caused a rash .", decoding="constrained")[0]
    assert " ".join(parse(row["generated"]).plain.split()) == "Aspirin caused a rash ."


@pytest.mark.integration
@pytest.mark.parametrize("family", ["ade", "ace2005event"])
def test_copy_ahead_option_reaches_generation_and_changes_no_output(family, monkeypatch):
    """``GenerationOptions.copy_ahead`` (--copy-ahead) runs copy-ahead, events' two passes included,
    and the outputs are those of one token a pass."""
    import fishdip.models.generation as generation

    loaded = make_tiny_llama()
    task = load_task(family, FIXTURES)
    examples = task.read("test")[:3]
    widths = []
    real = generation.copy_ahead_rows
    monkeypatch.setattr(generation, "copy_ahead_rows", lambda *a, **k: widths.append(a[6]) or real(*a, **k))
    for decoding in ("free", "own-brackets", "annotated-tails"):
        plain = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding=decoding), progress=False)
        assert widths == []
        ahead = task.predict(loaded, examples, GenerationOptions(max_length=64, decoding=decoding, copy_ahead=3),
                             progress=False)
        assert widths and set(widths) == {3} and ahead[0] == plain[0]
        widths.clear()
