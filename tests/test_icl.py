"""In-context learning: demonstrations chosen by similarity, within the token budget; runs end to end."""

import json

import pytest
import torch

from fishdip.cli import main
from fishdip.evaluation.icl import Demonstrations
from fishdip.models.generation import generate
from tests.conftest import FIXTURES, make_tiny_llama

PAIRS = [("Ann lives in Rome .", "[ Ann | person ] lives in [ Rome | location ] ."),
         ("The cat sat .", "The cat sat ."),
         ("Bob works for Acme in Oslo .", "[ Bob | person ] works for [ Acme | org ] in [ Oslo | location ] .")]


def test_most_similar_demonstration_is_nearest_and_the_budget_holds():
    loaded = make_tiny_llama()
    demos = Demonstrations(loaded, PAIRS, context_tokens=10_000)
    assert demos.ranked("Bob lives in Oslo .")[0] == 2  # shares Bob, Oslo (rare words weigh more)
    prefix = demos.prefix("Bob lives in Oslo .")
    assert prefix.endswith(demos.texts[2]) and all(t in prefix for t in demos.texts)
    tight = Demonstrations(loaded, PAIRS, context_tokens=demos.lengths[1] + 1)  # room for the shortest only
    assert tight.prefix("Bob lives in Oslo .") == demos.texts[1]
    shuffled = Demonstrations(loaded, PAIRS, context_tokens=10_000, selection="random", seed=3)
    assert sorted(shuffled.ranked("x")) == [0, 1, 2] and shuffled.ranked("x") == shuffled.ranked("y")


@pytest.mark.integration
def test_generation_prompt_holds_the_demonstrations_and_stops_at_the_line(monkeypatch):
    import fishdip.models.generation as generation

    loaded = make_tiny_llama()
    demos = Demonstrations(loaded, PAIRS, context_tokens=10_000)
    seen = {}
    original = generation.greedy_rows

    def spy(model, input_ids, attention, limits, eos, choose=None, stops=()):
        seen.update(input_ids=input_ids, stops=stops)
        return original(model, input_ids, attention, limits, eos, choose, stops)

    monkeypatch.setattr(generation, "greedy_rows", spy)
    # demonstrations reach generation as data: one prefix per source
    generate(loaded, ["Bob lives in Oslo ."], 64, prefixes=[demos.prefix("Bob lives in Oslo .")],
             context_tokens=demos.context_tokens)
    prompt = loaded.tokenizer.decode(seen["input_ids"][0], skip_special_tokens=True)
    assert prompt == demos.prefix("Bob lives in Oslo .") + "Sentence: Bob lives in Oslo .\nAnnotated:"
    newline = loaded.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert newline in seen["stops"] and seen["stops"] == loaded.line_ends()


@pytest.mark.integration
def test_rows_that_end_their_line_leave_the_batch_and_write_what_generate_writes(monkeypatch):
    """Free decoding with demonstrations runs greedy_rows, where a row that wrote a line break
    leaves the batch; model.generate (its stop string) writes the same texts."""
    import fishdip.models.generation as generation

    loaded = make_tiny_llama()
    newline = loaded.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():  # the random model writes a line break in some rows, in others never
        loaded.model.get_output_embeddings().weight[newline] *= 2
    sources = ["John met Mary .", "A much longer sentence about Paris and its people .", "Hi",
               "Lee Harvey Oswald shot John F. Kennedy in Dallas .", "Short one ."]
    demos = Demonstrations(loaded, PAIRS, context_tokens=10_000)
    prefixes = [demos.prefix(s) for s in sources]
    own = generate(loaded, sources, 64, prefixes=prefixes, context_tokens=demos.context_tokens)
    monkeypatch.setattr(generation, "plain_greedy", lambda model: False)  # model.generate's path
    reference = generate(loaded, sources, 64, prefixes=prefixes, context_tokens=demos.context_tokens)
    assert own == reference
    assert True in own.hit_limit and False in own.hit_limit


@pytest.mark.integration
def test_icl_run_scores_without_training(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "conll03", "--data-dir", str(FIXTURES), "--model", str(tiny_model_dir),
              "--method", "icl", "--train-size", "2", "--eval-limit", "2", "--max-length", "64",
              "--icl-context", "200", "--quiet", "--output-dir", str(out)])
    assert exit_info.value.code in (0, None)
    episode = json.loads((out / "results.json").read_text())["episodes"][0]
    assert episode["train"]["steps"] == 0 and "entity_f1" in episode["metrics"]
    assert not (out / "models").exists()
