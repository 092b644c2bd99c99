"""Commands beyond `fishdip train` and the Python API: a mistake is one line and exit 2 (or one
FishdipError), checked before a model is loaded or a file written."""

import json
import shutil

import pytest

from fishdip.cli import main
from fishdip.errors import FishdipError
from tests.conftest import FIXTURES


def _one_line_exit_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


EVALUATE = [
    (["--num-beams", "0"], "--num-beams 0: must be >= 1 and <= 64"),
    (["--num-beams", "100000"], "--num-beams 100000: must be >= 1 and <= 64"),
    (["--eval-limit", "0"], "--eval-limit 0: must be >= 1"),
    (["--eval-split", "train"], "--eval-split 'train': must be one of dev, test"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--decoder", "spacy"], "--decoder 'spacy': must be one of fishdip, tanl"),
    (["--fold", "-2"], "--fold -2: must be >= 0"),
    (["--data-dir", "no-such-dir"], "--data-dir no-such-dir: no such folder"),
    (["--output", "."], "--output .: is a folder; give a file name"),
    (["--output", "README.md/x.json"], "README.md is a file, so no folder can be made there"),
    (["--device", "tpu"], "--device tpu: not a device"),
    (["--decoding", "constrained", "--num-beams", "2"], "--num-beams 2: --decoding constrained runs greedy search"),
    (["--device", "cuda:7"], "--device cuda:7: this machine has"),
]


@pytest.mark.parametrize("args, message", EVALUATE, ids=[" ".join(a) for a, _ in EVALUATE])
def test_evaluate_refuses_bad_options_before_loading_the_model(args, message, capsys, monkeypatch):
    import fishdip.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    err = _one_line_exit_2(["evaluate", "--model", "no/such/model/", "--task", "conll03", "--data-dir",
                            str(FIXTURES), *args], capsys)
    assert message in err, err


def test_a_model_folder_with_truncated_weights_is_one_line(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    err = _one_line_exit_2(["evaluate", "--model", str(broken), "--task", "conll03", "--data-dir", str(FIXTURES)],
                           capsys)
    assert "could not load the weights of model" in err


def test_predict_reads_run_folders_and_refuses_non_utf8_input(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    err = _one_line_exit_2(["predict", "--model", str(tiny_model_dir), "--input", str(bad)], capsys)
    assert f"--input {bad}: not UTF-8 text (byte 3" in err
    err = _one_line_exit_2(["predict", "--model", str(tiny_model_dir)], capsys)
    assert "give sentences as arguments or with --input" in err


def test_rescore_of_a_broken_run_folder_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")
    (run / "predictions.jsonl").write_text("")
    err = _one_line_exit_2(["rescore", str(run)], capsys)
    assert "config.json: not a fishdip run config" in err
    (run / "config.json").write_text(json.dumps({"task": "conll03", "data_dir": str(FIXTURES), "train": {}}))
    err = _one_line_exit_2(["rescore", str(run)], capsys)
    assert "predictions.jsonl: no stored generations (an empty file)" in err


def test_report_on_results_of_the_wrong_shape_or_an_unknown_metric_is_one_line(tmp_path, capsys):
    cell = tmp_path / "grid" / "conll" / "size-3" / "full" / "episode-1"
    cell.mkdir(parents=True)
    (cell / "results.json").write_text(json.dumps({"episodes": [{"episode": 1}]}))
    err = _one_line_exit_2(["report", str(tmp_path / "grid")], capsys)
    assert "results.json: not a fishdip results file" in err
    (cell / "results.json").write_text(json.dumps({"episodes": [{"episode": 1, "metrics": {"entity_f1": 0.5},
                                                                 "train": {"steps": 1, "seconds": 2.0,
                                                                           "losses": [0.7]}}]}))
    err = _one_line_exit_2(["report", str(tmp_path / "grid")], capsys)
    assert "episode-1/results.json: episode 1: its training record's 'losses' is not a list of objects" in err
    (cell / "results.json").write_text(json.dumps({"episodes": [{"episode": 1, "metrics": {"entity_f1": 0.5},
                                                                 "train": {"steps": 1, "seconds": 2.0,
                                                                           "losses": [{"loss": 0.7}]}}]}))
    (cell / "config.json").write_text("{}")
    err = _one_line_exit_2(["report", str(tmp_path / "grid"), "--metric", "entity_f2"], capsys)
    assert "--metric 'entity_f2': not a metric fishdip reports" in err


GRID_BASE = """
tasks = ["conll03"]
methods = ["full", "fish-dip"]
[options]
data_dir = "{data}"
"""
GRIDS = [
    ('episodes = ["1"]', "episodes ['1']: must be a non-empty list of episode numbers"),
    ("episodes = []", "episodes []: must be a non-empty list"),
    ("episodes = [1.5]", "episodes [1.5]: must be a non-empty list"),
    ("episodes = [1, 1]", "episodes [1, 1]: must be a non-empty list of episode numbers >= 0, each once"),
    ('metric = "entity_f2"', "metric 'entity_f2' is not one its tasks report"),
    ('[sweep]\nsplit = "test"', "[sweep] split 'test': must be 'dev' (choosing values on the test split"),
    ('[sweep]\nepisodes = ["x"]', "[sweep] episodes ['x']: must be a non-empty list"),
    ('[method.full]\nepochs = "3"', "--epochs '3': must be a whole number"),
    ('[method.full]\nlr = "x"', "--lr 'x': must be a number"),
    ('[method.full]\nlr = ["x", 1e-3]', "--lr 'x': must be a number"),
]


@pytest.mark.parametrize("extra, message", GRIDS, ids=[g for g, _ in GRIDS])
def test_grid_files_are_validated_whole_before_any_cell(tmp_path, extra, message, capsys):
    base = GRID_BASE.format(data=FIXTURES)
    text = base + extra if extra.startswith("[") else extra + "\n" + base  # a table, or a top-level key
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    err = _one_line_exit_2(["experiment", str(grid), "--output-dir", str(tmp_path / "out")], capsys)
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_methods_listed_twice_are_refused(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID_BASE.format(data=FIXTURES).replace('["full", "fish-dip"]', '["full", "full"]'))
    assert "`methods` lists full twice" in _one_line_exit_2(["experiment", str(grid)], capsys)
    err = _one_line_exit_2(["train", "--method", "full,fish-dip,full", "--data-dir", str(FIXTURES),
                            "--task", "conll03"], capsys)
    assert "--method full,fish-dip,full: full listed twice" in err


@pytest.mark.parametrize("options, message", [
    (dict(method=[]), "--method: give at least one method"),
    (dict(method=["full", "full"]), "full listed twice"),
    (dict(epochs="3"), "--epochs '3': must be a whole number"),
    (dict(episodes=[1.5]), "--episodes [1.5]: must be a list of whole episode numbers"),
    (dict(lora_rank=10**6), "--lora-rank 1000000: must be >= 1 and <= 4096"),
])
def test_the_python_api_raises_one_fishdip_error(tmp_path, options, message):
    import fishdip

    with pytest.raises(FishdipError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fishdip.train(task="conll03", data_dir=str(FIXTURES), output_dir=str(tmp_path / "run"), progress=False,
                      **options)
    assert not (tmp_path / "run").exists()


def test_spert_entities_that_are_not_a_list_name_the_example(tmp_path):
    from fishdip.data.spert import read_spert, read_types
    from fishdip.errors import DataError

    types = tmp_path / "types.json"
    types.write_text(json.dumps({"entities": {"Peop": {"verbose": "People"}}, "relations": {}}))
    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"tokens": ["Ann"], "entities": None, "relations": []}]))
    with pytest.raises(DataError, match="'entities' must be a list"):
        read_spert(data, read_types(types))
    data.write_text(json.dumps([{"tokens": ["Ann", " "], "entities": [], "relations": []}]))
    with pytest.raises(DataError, match="token 1 is empty or whitespace"):
        read_spert(data, read_types(types))


@pytest.mark.integration
def test_seed_is_added_to_the_episode(tmp_path, tiny_model_dir):
    """--seed does what its help says: another seed, another shuffling; seed 0 is the episode itself."""
    from typer.testing import CliRunner

    from fishdip.cli import app

    losses = {}
    for seed in (0, 0, 5):
        out = tmp_path / f"seed-{seed}-{len(losses)}"
        args = ["train", "--task", "conll03", "--method", "full", "--model", str(tiny_model_dir), "--data-dir",
                str(FIXTURES), "--eval-split", "dev", "--eval-limit", "1", "--batch-size", "2", "--max-length",
                "48", "--output-dir", str(out), "--quiet", "--save", "none", "--epochs", "1", "--seed", str(seed)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        episode = json.loads((out / "results.json").read_text())["episodes"][0]
        losses.setdefault(seed, []).append(([x["loss"] for x in episode["train"]["losses"]], episode["train_indices"]))
    assert losses[0][0] == losses[0][1]  # the same seed, the same run
    assert losses[5][0][0] != losses[0][0][0] and losses[5][0][1] == losses[0][0][1]  # another order, same subset


def _train_args(model, out, *extra):
    return ["train", "--task", "conll03", "--method", "full", "--model", str(model), "--data-dir", str(FIXTURES),
            "--eval-split", "dev", "--eval-limit", "1", "--batch-size", "2", "--max-length", "48", "--output-dir",
            str(out), "--quiet", "--save", "none", "--epochs", "1", *extra]


def test_a_folder_fishdip_did_not_write_is_not_written_into(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')
    err = _one_line_exit_2(_train_args(tiny_model_dir, out), capsys)
    assert "holds results.json but no config.json: not a fishdip run folder" in err
    assert (out / "results.json").read_text() == '{"mine": true}' and not (out / "config.json").exists()
    before = (tiny_model_dir / "config.json").read_text()
    err = _one_line_exit_2(_train_args(tiny_model_dir, tiny_model_dir, "--overwrite"), capsys)
    assert "is a saved model folder" in err and (tiny_model_dir / "config.json").read_text() == before


@pytest.mark.integration
def test_one_writer_per_run_folder_and_no_stale_lock(tmp_path, tiny_model_dir, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    from fishdip.runs.rundir import LOCK_FILE, one_writer
    from tests.conftest import REPO

    out = tmp_path / "run"
    with one_writer(out):  # another process (here: another open of the lock) holds the folder
        err = _one_line_exit_2(_train_args(tiny_model_dir, out), capsys)
    assert f"--output-dir {out} is in use by another fishdip process (pid {os.getpid()})" in err
    code = ("import pathlib, time\nfrom fishdip.runs.rundir import one_writer\n"
            f"with one_writer(pathlib.Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code],
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    with one_writer(out):  # the killed holder left no stale lock
        assert (out / LOCK_FILE).read_text() == str(os.getpid())


def test_a_data_dir_is_the_only_place_data_is_read_from(tmp_path, monkeypatch, capsys):
    from fishdip.data.datasets import load_split
    from fishdip.errors import DataError

    partial = tmp_path / "data" / "conll03"
    partial.mkdir(parents=True)
    (partial / "test.txt").write_text((FIXTURES / "conll03" / "test.txt").read_text())
    monkeypatch.setenv("FISHDIP_DATA_DIR", str(FIXTURES))  # holds a complete copy: it must not be used
    with pytest.raises(DataError, match=rf"train.txt not found \(looked in {partial}\)"):
        load_split("conll03", "train", str(tmp_path / "data"))


def test_an_option_without_effect_in_some_grid_cells_is_said_once(tmp_path):
    from fishdip.runs.grid import load_grid, run_grid

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID_BASE.format(data=FIXTURES).replace('["full", "fish-dip"]', '["full", "lora"]')
                    + "lora_rank = 4\n[[sizes]]\ntrain_size = 2\n[[sizes]]\ntrain_size = 3\n")
    lines = []
    run_grid(load_grid(grid), dry_run=True, log=lines.append)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [f"warning: {grid}: method full: --lora-rank (read by lora only) has no effect on its cells"]


def _fake_run(root, episodes=(1,)):
    """A run folder holding saved models that only name themselves (enough for export's checks)."""
    for episode in episodes:
        folder = root / "models" / f"episode-{episode}"
        folder.mkdir(parents=True)
        (folder / "fishdip.json").write_text("{}")
    return root


@pytest.mark.parametrize("args, message", [
    (["export", "{tmp}/no-such-run", "--output", "{tmp}/out"], "no-such-run: no trained fishdip model here"),
    (["export", "{plain}", "--output", "{tmp}/out"], "no trained fishdip model here"),
    (["export", "{run}", "--output", "{tmp}/full", "--episode", "9"], "no saved model of episode 9 (saved: [1])"),
    (["export", "{run}", "--output", "{tmp}/full"], "--output {tmp}/full: exists and is not an empty folder"),
    (["export", "{run}", "--output", "{tmp}/out", "--method", "lora"], "run: no run of method lora here"),
    (["predict", "--model", "{run}"], "give sentences as arguments or with --input"),
    (["predict", "--model", "{run}", "--input", "{tmp}/no-such.txt"], "--input {tmp}/no-such.txt: No such file"),
    (["predict", "--model", "{run}", "--batch-size", "0", "a sentence"], "Invalid value for '--batch-size'"),
    (["predict", "--model", "{plain}", "a sentence"], "a model fishdip did not train needs its task"),
    (["rescore", "{run}", "--decoder", "spacy"], "--decoder 'spacy': must be one of fishdip, tanl"),
    (["rescore", "{run}", "--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere: no such folder"),
    (["rescore", "{run}", "--output", "{tmp}"], "is a folder; give a file name"),
    (["rescore", "{run}"], "not a fishdip run folder"),
    (["data", "fetch", "nope"], "no public source known for 'nope'"),
    (["data", "fetch", "conll04", "--dest", "{tmp}/a-file"], "cannot make the dataset folder (Not a directory)"),
    (["experiment", "{tmp}/grid.toml", "--output-dir", "{tmp}/a-file/grid"], "a-file/grid: Not a directory"),
])
def test_other_commands_and_unwritable_outputs_are_one_line(tmp_path, tiny_model_dir, capsys, args, message):
    _fake_run(tmp_path / "run")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "grid.toml").write_text(f'tasks = ["conll03"]\nmethods = ["full"]\n[options]\ndata_dir = "{FIXTURES}"\n'
                                        f'model = "{tiny_model_dir}"\n')
    fill = {"tmp": str(tmp_path), "plain": str(tiny_model_dir), "run": str(tmp_path / "run")}
    err = _one_line_exit_2([a.format(**fill) for a in args], capsys)
    assert message.format(**fill) in err, err


def test_load_and_evaluate_in_python_raise_one_fishdip_error(tmp_path, tiny_model_dir):
    import fishdip

    for kwargs, message in [(dict(path=tmp_path / "nothing"), "no trained fishdip model here"),
                            (dict(path=tiny_model_dir), "a model fishdip did not train needs its task"),
                            (dict(path=tiny_model_dir, task="conll03", data_dir=str(FIXTURES), decoder="spacy"),
                             "unknown decoder 'spacy'"),
                            (dict(path=tiny_model_dir, task="nope"), "unknown dataset 'nope'"),
                            (dict(path=tiny_model_dir, task="conll03", data_dir=str(tmp_path)), "conll03")]:
        with pytest.raises(FishdipError, match=message):
            fishdip.load(**kwargs)
    predictor = fishdip.load(tiny_model_dir, task="conll03", data_dir=str(FIXTURES))
    for kwargs, message in [(dict(split="train"), "--eval-split 'train': must be one of dev, test"),
                            (dict(batch_size=0), "--batch-size 0: must be >= 1"),
                            (dict(num_beams=100), "--num-beams 100: must be >= 1 and <= 64"),
                            (dict(limit=0), "--eval-limit 0: must be >= 1")]:
        with pytest.raises(FishdipError, match=message.replace("(", r"\(")):
            predictor.evaluate(data_dir=str(FIXTURES), **kwargs)


def test_a_model_save_that_fills_the_disk_is_an_os_error(tmp_path):
    """safetensors reports a full disk in an error of its own; a save turns it into the OSError the
    runner turns into a warning (the metrics are kept), and leaves no half-written folder."""
    from safetensors import SafetensorError

    from fishdip.models.loading import write_folder_atomic

    def write(tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    with pytest.raises(OSError, match="No space left on device"):
        write_folder_atomic(tmp_path / "models" / "episode-1", write)
    assert list((tmp_path / "models").iterdir()) == []
