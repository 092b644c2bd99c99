"""In-context learning: demonstrations chosen by similarity, within the token budget; runs end to end."""

import json

import pytest

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
    loaded = make_tiny_llama()
    demos = Demonstrations(loaded, PAIRS, context_tokens=10_000)
    seen = {}
    original = loaded.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(loaded.model, "generate", spy)
    # demonstrations reach generation as data: one prefix per source
    generate(loaded, ["Bob lives in Oslo ."], 64, prefixes=[demos.prefix("Bob lives in Oslo .")],
             context_tokens=demos.context_tokens)
    prompt = loaded.tokenizer.decode(seen["input_ids"][0], skip_special_tokens=True)
    assert prompt == demos.prefix("Bob lives in Oslo .") + "Sentence: Bob lives in Oslo .\nAnnotated:"
    assert seen["stop_strings"] == ["\n"]


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
