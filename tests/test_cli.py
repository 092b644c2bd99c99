import json

import pytest
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.runs.config import parse_episodes
from fishdip.text import tokenize

runner = CliRunner()


def test_parse_episodes():
    assert parse_episodes("1-3") == [1, 2, 3]
    assert parse_episodes("1,4,7") == [1, 4, 7]


def test_tokenize_like_the_corpora_with_offsets():
    text = "Booth, who shot John F. Kennedy's friend in the U.S."
    tokens = tokenize(text)
    assert [t.text for t in tokens] == ["Booth", ",", "who", "shot", "John", "F.", "Kennedy", "'s", "friend", "in",
                                        "the", "U.S", "."]
    assert all(text[t.start:t.end] == t.text for t in tokens)
    assert [t.text for t in tokenize("@user loved it at 2:30 p.m. on Nov. 22 #win https://t.co/x")] == [
        "@user", "loved", "it", "at", "2:30", "p.m.", "on", "Nov.", "22", "#win", "https://t.co/x"]


@pytest.mark.integration
def test_train_compare_evaluate_predict_end_to_end(tmp_path, tiny_model_dir, data_dir):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--task", "conll04", "--method", "full,fish-dip", "--model", str(tiny_model_dir),
        "--data-dir", str(data_dir), "--train-size", "4", "--epochs", "1", "--eval-limit", "3",
        "--episodes", "1-2", "--batch-size", "2", "--max-length", "64", "--output-dir", str(out), "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert "| fish-dip |" in result.output and "| full |" in result.output
    for method in ("full", "fish-dip"):
        folder = out / method
        config = json.loads((folder / "config.json").read_text())
        assert config["train"]["method"] == method and config["episodes"] == [1, 2]
        results = json.loads((folder / "results.json").read_text())
        assert results["complete"] and len(results["episodes"]) == 2
        assert set(results["aggregate"]["entity_f1"]) == {"mean", "std", "n"}
        assert "relation_f1" in results["aggregate"]
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and {"input", "generated", "predicted", "gold"} <= set(rows[0])
        assert (folder / "models" / "episode-2" / "fishdip.json").is_file()
    # both methods saw the same subsets
    full = json.loads((out / "full" / "results.json").read_text())
    dip = json.loads((out / "fish-dip" / "results.json").read_text())
    assert [e["train_indices"] for e in full["episodes"]] == [e["train_indices"] for e in dip["episodes"]]
    assert (out / "comparison.md").is_file() and (out / "losses.png").stat().st_size > 0

    model_dir = out / "fish-dip" / "models" / "episode-1"
    result = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--data-dir", str(data_dir),
                                 "--eval-limit", "2", "--output", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["num_examples"] == 2

    result = runner.invoke(app, ["predict", "--model", str(model_dir), "John lives in Rome ."])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["tokens"] == ["John", "lives", "in", "Rome", "."] and "entities" in row


@pytest.mark.integration
def test_single_method_writes_into_output_dir(tmp_path, tiny_model_dir):
    from tests.conftest import FIXTURES

    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--task", "ade", "--fold", "1", "--method", "fish", "--model", str(tiny_model_dir),
        "--data-dir", str(FIXTURES), "--epochs", "1", "--max-length", "64", "--output-dir", str(out),
        "--quiet", "--save", "none",
    ])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file() and not (out / "models").exists()


def test_bad_input_is_one_clear_line(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("FISHDIP_DATA_DIR", raising=False)
    monkeypatch.setenv("FISHDIP_CACHE_DIR", str(tmp_path))
    result = runner.invoke(app, ["train", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir)])
    assert result.exit_code == 2
    assert "error: dataset conll04" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--method", "bitfit", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--method 'bitfit': must be one of full" in result.output


@pytest.mark.parametrize("task,extra", [
    ("conll03", []), ("conll", []), ("conll05", []), ("conll12", []), ("ace2005event", []), ("ace2005_joint_er", []),
    # DST's default (constrained) decoding lets a random model write up to its schema's longest belief
    # state, about 960 byte tokens a turn (158 s beside a background run, 11 s free): test_constrained
    # covers that decoding
    ("multiwoz21", ["--train-size", "1", "--decoding", "free"]), ("ade", ["--fold", "0"]),
])
@pytest.mark.integration
def test_every_fixture_task_trains_and_scores(tmp_path, tiny_model_dir, task, extra):
    from tests.conftest import FIXTURES

    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--task", task, "--method", "fish-dip", "--model", str(tiny_model_dir), "--data-dir",
        str(FIXTURES), "--epochs", "1", "--max-length", "48", "--output-dir", str(out), "--quiet",
        "--eval-split", "dev" if task != "ade" else "test", *extra])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    metrics = results["episodes"][0]["metrics"]
    assert metrics["num_examples"] > 0 and "errors" in metrics
    meta = json.loads((out / "models" / "episode-1" / "fishdip.json").read_text())
    assert meta["task"] == task
    # a saved model evaluates without naming the task again
    decoding = extra[extra.index("--decoding"):][:2] if "--decoding" in extra else []
    result = runner.invoke(app, ["evaluate", "--model", str(out / "models" / "episode-1"), "--data-dir", str(FIXTURES),
                                 "--eval-split", "dev" if task != "ade" else "test", *decoding])
    assert result.exit_code == 0, result.output


def test_tasks_lists_every_dataset(tmp_path):
    from tests.conftest import FIXTURES

    result = runner.invoke(app, ["tasks", "--data-dir", str(FIXTURES)])
    assert result.exit_code == 0
    for name in ("conll04", "ade", "wnut17", "crossner_ai", "wikigold", "fewrel", "conll05", "ace2005event",
                 "multiwoz21", "conll", "ace2005_joint_er"):
        assert f"\n{name}  [" in "\n" + result.output
    assert "conll03  [ner]  (found in" in result.output
    assert result.output.count("    metric  ") == result.output.count("    source  ")  # every dataset says
    assert "macro-averaged over the types" in result.output  # ADE's published definition


@pytest.mark.integration
def test_rescore_decodes_stored_generations_again(tmp_path, tiny_model_dir, data_dir):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--task", "conll04", "--method", "full", "--model", str(tiny_model_dir), "--data-dir",
        str(data_dir), "--train-size", "2", "--epochs", "1", "--eval-limit", "3", "--max-length", "64",
        "--output-dir", str(out), "--quiet", "--save", "none"])
    assert result.exit_code == 0, result.output
    # rewrite the stored generations with gold text: the rescored F1 must then be perfect
    from fishdip.data.datasets import load_split
    from fishdip.tasks import load_task

    task = load_task("conll04", data_dir)
    gold = {ex.id: task.target(ex) for ex in load_split("conll04", "test", data_dir)[0]}
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    (out / "predictions.jsonl").write_text("".join(json.dumps({**r, "generated": gold[r["id"]]}) + "\n"
                                                   for r in rows))
    for decoder in ("tanl", "fishdip"):
        result = runner.invoke(app, ["rescore", str(out), "--decoder", decoder, "--output", str(tmp_path / "r.json")])
        assert result.exit_code == 0, result.output
        scores = json.loads((tmp_path / "r.json").read_text())["run"]
        assert scores["decoder"] == decoder and scores["aggregate"]["entity_f1"]["mean"] == 1.0
    result = runner.invoke(app, ["rescore", str(tiny_model_dir)])  # a model folder is not a run
    assert result.exit_code == 2 and "not a fishdip run folder" in result.output


@pytest.mark.integration
def test_strict_tags_reports_file_and_line(tmp_path, tiny_model_dir):
    folder = tmp_path / "data" / "conll"
    folder.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (folder / f"{split}.txt").write_text("Acme\tB-org\nCorp\tI-org\n\nsaid\tO\nBob\tI-per\n")
    args = ["train", "--task", "conll", "--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"),
            "--epochs", "1", "--max-length", "32", "--output-dir", str(tmp_path / "out"), "--quiet",
            "--save", "none"]
    result = runner.invoke(app, [*args, "--strict-tags"])
    assert result.exit_code == 2
    assert "train.txt: line 5: invalid transition O -> I-per" in result.output
    assert runner.invoke(app, args).exit_code == 0  # lenient by default


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["experiment", "--help"], ["tasks"],
                                  ["train", "--lr", "-1"], ["train", "--method", "full,nope"]])
@pytest.mark.integration
def test_help_listings_and_option_errors_do_not_import_torch(args):
    """The CLI starts at once: help, `tasks` and option mistakes never load torch or transformers."""
    import subprocess
    import sys

    code = ("import sys\nfrom fishdip.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:] + out.stderr[-500:]
