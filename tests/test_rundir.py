"""The run-folder contract: resume, refuse, finish, keep metrics when a model save fails."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.options import ConfigError
from fishdip.runs.config import ExperimentConfig, configs_from_options
from fishdip.runs.experiment import run_experiment
from fishdip.training.config import TrainConfig
from tests.conftest import FIXTURES, REPO

runner = CliRunner()


def _args(model, out, *extra):
    return ["train", "--task", "conll03", "--method", "full", "--model", str(model), "--data-dir", str(FIXTURES),
            "--eval-split", "dev", "--batch-size", "2", "--max-length", "48", "--output-dir", str(out), "--quiet",
            "--save", "none", *extra]


@pytest.mark.integration
def test_killed_run_resumes_without_redoing_finished_episodes(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    args = _args(tiny_model_dir, out, "--episodes", "1-3", "--epochs", "40")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", "from fishdip.cli import main; main()", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and len(json.loads(results.read_text())["episodes"]) == 1:
            proc.send_signal(signal.SIGKILL)  # during episode 2
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    first = json.loads(results.read_text())["episodes"]
    assert [e["episode"] for e in first] == [1]
    rows_before = (out / "predictions.jsonl").read_text()

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "resuming: episodes 1 are finished and kept; running 2-3" in result.output
    after = json.loads(results.read_text())
    assert [e["episode"] for e in after["episodes"]] == [1, 2, 3] and after["complete"]
    assert after["episodes"][0] == first[0]  # episode 1 untouched
    assert (out / "predictions.jsonl").read_text().startswith(rows_before)


@pytest.mark.integration
def test_finished_run_is_not_recomputed_and_another_run_is_refused(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    assert runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1")).exit_code == 0
    stamp = (out / "results.json").stat().st_mtime_ns
    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1"))
    assert result.exit_code == 0 and "already finished" in result.output
    assert (out / "results.json").stat().st_mtime_ns == stamp

    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "2", "--lr", "0.01"))
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert "holds a different run" in line and "epochs: 1 -> 2" in line and "lr: None -> 0.01" in line
    assert "--overwrite" in line

    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "2", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


@pytest.mark.integration
def test_more_episodes_extend_a_finished_run(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    assert runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1")).exit_code == 0
    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1", "--episodes", "1-2"))
    assert result.exit_code == 0 and "running 2" in result.output
    assert [e["episode"] for e in json.loads((out / "results.json").read_text())["episodes"]] == [1, 2]


@pytest.mark.integration
def test_failed_model_save_keeps_the_metrics(tmp_path, tiny_model_dir, monkeypatch):
    import fishdip.runs.experiment as experiment

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(experiment, "save_model", full_disk)
    logged: list[str] = []
    cfg = ExperimentConfig(task="conll03", model=str(tiny_model_dir), data_dir=str(FIXTURES), eval_split="dev",
                           output_dir=str(tmp_path / "run"), train=TrainConfig(method="full", epochs=1,
                                                                              max_length=48))
    results = run_experiment(cfg, progress=False, log=logged.append)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["episodes"][0]["metrics"] == results["episodes"][0]["metrics"]
    assert saved["episodes"][0]["model"] is None
    assert any("could not be saved" in line and "No space left" in line for line in logged)
    logged.clear()  # a rerun says so, instead of passing over the missing model without a word
    run_experiment(cfg, progress=False, log=logged.append)
    assert any("episode(s) 1 finished but their model was not saved" in line for line in logged), logged


class _Stop(Exception):
    pass


def test_scripts_see_the_pairs_and_seed_the_runner_trains_on(tmp_path, tiny_model_dir, monkeypatch):
    """gate_reading.py and the group-by-length benchmark look at a cell through episode_pairs and
    episode_train_config: they must be what the runner hands its trainer, episode by episode."""
    import fishdip.runs.experiment as experiment

    seen = {}

    def trainer(loaded, pairs, train, **kwargs):
        seen["pairs"], seen["train"] = pairs, train
        raise _Stop

    monkeypatch.setattr(experiment, "Trainer", trainer)
    cfg = ExperimentConfig(task="conll03", model=str(tiny_model_dir), data_dir=str(FIXTURES), eval_split="dev",
                           train_fraction=0.5, episodes=[3], output_dir=str(tmp_path / "run"),
                           train=TrainConfig(method="full", epochs=1, max_length=48, seed=7))
    with pytest.raises(_Stop):
        run_experiment(cfg, progress=False, log=lambda *_: None)
    assert seen["pairs"] == experiment.episode_pairs(cfg, 3) and len(seen["pairs"]) > 0
    assert seen["train"] == experiment.episode_train_config(cfg, 3) and seen["train"].seed == 10
    # the episode picks the subset (a small fixture: some other episodes draw the same one)
    assert any(experiment.episode_pairs(cfg, e) != seen["pairs"] for e in range(4, 12))


def test_nothing_is_written_when_the_data_cannot_be_read(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("FISHDIP_DATA_DIR", raising=False)  # wnut17 is then nowhere
    monkeypatch.setenv("FISHDIP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = runner.invoke(app, _args(tiny_model_dir, out, "--task", "wnut17"))
    assert result.exit_code == 2 and "not found" in result.output
    assert not out.exists()


@pytest.mark.integration
def test_leftovers_of_a_killed_run_are_removed(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".results.json.x1y2.tmp").write_text("{")
    (out / "models").mkdir()
    (out / "models" / ".episode-1.abc").mkdir()
    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1"))
    assert result.exit_code == 0 and "removed 2 temporary" in result.output
    # only the run folder's lock stays (rundir.one_writer: held while a run writes, free once it ends)
    assert [p.name for p in out.glob(".*")] == [".fishdip.lock"] and not list((out / "models").glob(".*"))


@pytest.mark.integration
def test_single_and_multi_method_runs_do_not_mix(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    assert runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1")).exit_code == 0
    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1", "--method", "full,random"))
    assert result.exit_code == 2 and "holds a single-method run" in result.output


@pytest.mark.integration
def test_default_output_folder_is_new_per_run(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a for a in _args(tiny_model_dir, "x", "--epochs", "1") if a not in ("--output-dir", "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("conll03-full-") and (folder / "results.json").is_file()


@pytest.mark.integration
def test_ctrl_c_says_where_the_results_are_and_how_to_resume(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", "from fishdip.cli import main; main()",
                             *_args(tiny_model_dir, out, "--episodes", "1-3", "--epochs", "3000")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120  # config.json is written just before episode 1 starts
    while not (out / "config.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # inside episode 1's training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"interrupted: finished episodes are kept in {out}/" in err and "run the same command again" in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_a_run_written_before_the_density_rename_still_resumes(tmp_path, tiny_model_dir):
    """Runs written when --density was called --sparsity are the same run, not a different one."""
    out = tmp_path / "run"
    assert runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1")).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    config["train"]["sparsity"] = config["train"].pop("density")
    (out / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, _args(tiny_model_dir, out, "--epochs", "1"))
    assert result.exit_code == 0 and "already finished" in result.output
    assert ExperimentConfig.from_dict(config).train.density == config["train"]["sparsity"]


def test_the_old_option_name_says_what_it_is_called_now():
    with pytest.raises(ConfigError, match="sparsity is now called density"):
        configs_from_options({"sparsity": 0.02})


def test_a_run_recorded_before_an_option_existed_is_the_same_run():
    """A new option is one field: a recorded run that lacks it counts with the field's default (or its
    ``older`` value), so no registry beside the field has to learn about it."""
    from dataclasses import fields

    from fishdip.options import older_value
    from fishdip.runs.rundir import differences

    recorded = ExperimentConfig(train=TrainConfig(method="full")).to_dict()
    checked = 0
    for f in fields(ExperimentConfig):
        if f.name != "train" and recorded[f.name] == older_value(f):
            older = {k: v for k, v in recorded.items() if k != f.name}
            assert differences(older, recorded) == [], f.name
            checked += 1
    for f in fields(TrainConfig):
        if recorded["train"][f.name] == older_value(f):
            older = {**recorded, "train": {k: v for k, v in recorded["train"].items() if k != f.name}}
            assert differences(older, recorded) == [], f.name
            checked += 1
    assert checked >= 50
    # fish-dip runs the paper recipe today; runs made before --recipe existed ran the default one
    fish_dip = ExperimentConfig().to_dict()
    older = {**fish_dip, "train": {k: v for k, v in fish_dip["train"].items() if k != "recipe"}}
    assert differences(older, fish_dip) == ["recipe: 'default' -> 'paper'"]


def test_config_json_records_the_settings_a_recipe_fixed_and_older_records_are_the_same_run():
    """A paper run's config.json says what ran (rank_mode 'reference', Adafactor), not the option
    defaults the recipe replaced; runs recorded before it did are still the same run."""
    from fishdip.runs.rundir import differences

    recorded = ExperimentConfig(train=TrainConfig(method="fish-dip")).to_dict()["train"]
    assert (recorded["recipe"], recorded["optimizer"], recorded["rank_by"], recorded["rank_mode"],
            recorded["fisher_mode"], recorded["refresh_phase"]) == \
           ("paper", "adafactor", "sum", "reference", "reference", "before")
    assert ExperimentConfig(train=TrainConfig(method="full")).to_dict()["train"]["optimizer"] == "adamw"
    paper = json.loads((REPO / "docs/results/conll04-paper/conll04/fraction-0.01/fish-dip/episode-1/config.json")
                       .read_text())
    assert paper["train"]["rank_mode"] == "eval"  # written before: the option's default, not what ran
    assert ExperimentConfig.from_dict(paper).to_dict()["train"]["rank_mode"] == "reference"

    def now(config: dict) -> dict:  # what this version writes for a recorded run's options
        return {**ExperimentConfig.from_dict(config).to_dict(), "data_files": paper["data_files"],
                "fishdip_version": paper["fishdip_version"]}

    assert differences(paper, now(paper)) == []
    v1 = now({**paper, "train": {**paper["train"], "recipe": "paper-v1"}})
    assert set(differences(paper, v1)) == {
        "fisher-mode: 'reference' -> 'eval'", "recipe: 'paper' -> 'paper-v1'", "refresh-phase: 'before' -> 'after'",
        "rank-mode: 'reference' -> 'train'", "loss-positions: 'padded' -> 'target'"}
