"""`fishdip experiment` (a resumable grid of runs) and `fishdip report` (tables, paired statistics, plots)."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.reports.grid import _mean_std, paired
from fishdip.reports.plots import aligned_curve
from fishdip.runs.grid import GridError, estimate, load_grid, run_grid
from fishdip.training.checkpoint import checkpoint_path
from tests.conftest import REPO

runner = CliRunner()


def _data(tmp_path):
    """A CoNLL NER folder with 10 training, 3 dev and 4 test sentences."""
    names, places = ["Ann", "Bob", "Cy", "Dee", "Eve"], ["Rome", "Oslo", "Lima"]
    folder = tmp_path / "data" / "conll"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 10), ("dev", 3), ("test", 4)):
        sentences = [f"{names[i % 5]}\tB-PER\nlives\tO\nin\tO\n{places[i % 3]}\tB-LOC\n.\tO\n"
                     for i in range(n)]
        (folder / f"{split}.txt").write_text("\n".join(sentences))
    return folder.parent


def _grid(tmp_path, model_dir, extra: str = "") -> object:
    path = tmp_path / "grid.toml"
    path.write_text(f"""
output_dir = "{tmp_path / 'out'}"
tasks = ["conll"]
episodes = [1, 2]
methods = ["full", "fish-dip"]
metric = "entity_f1"

[options]
model = "{model_dir}"
data_dir = "{_data(tmp_path)}"
eval_split = "test"
batch_size = 2
max_length = 48
save = "none"

[[sizes]]
train_size = 3
max_steps = 12

[[sizes]]
train_size = 6
max_steps = 12

[method.fish-dip]
refresh_steps = 3
lr = [1e-3, 1e-2]

[sweep]
episodes = [1]
{extra}""")
    return path


@pytest.mark.integration
def test_grid_kill_resume_and_report(tmp_path, tiny_model_dir):
    grid_file = _grid(tmp_path, tiny_model_dir)
    grid = load_grid(grid_file)
    paths = [c.path for c in grid.cells()]
    # episode-major: both methods of an episode before the next episode
    assert paths[:4] == ["conll/size-3/full/episode-1", "conll/size-3/fish-dip/episode-1",
                         "conll/size-3/full/episode-2", "conll/size-3/fish-dip/episode-2"]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", "from fishdip.cli import main; main()", "experiment",
                             str(grid_file), "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / paths[0] / "results.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if first.is_file():
            proc.send_signal(signal.SIGKILL)  # during the fish-dip sweep or its first cell
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    unfinished = [p for p in paths if not (out / p / "results.json").is_file()]
    assert unfinished, "the grid finished before it could be killed"
    kept = first.read_text()
    before = first.stat().st_mtime_ns

    lines = []
    status = run_grid(load_grid(grid_file), progress=False, log=lines.append)
    assert set(status.values()) == {"finished"} and len(status) == 8
    assert "8 cells selected, 1 finished, 7 to run" in lines[0]
    assert first.read_text() == kept and first.stat().st_mtime_ns == before  # not redone
    for p in paths:
        results = json.loads((out / p / "results.json").read_text())
        assert results["complete"] and [e["episode"] for e in results["episodes"]] == [int(p[-1])]
    # the sweep chose on the test-free split and said so; the cells used the chosen rate
    sweep = json.loads((out / "conll/size-3/fish-dip/sweep.json").read_text())
    assert sweep["split"] == "dev" and len(sweep["scores"]) == 2 and sweep["chosen"] in sweep["candidates"]
    config = json.loads((out / "conll/size-3/fish-dip/episode-1/config.json").read_text())
    assert config["train"]["lr"] == sweep["chosen"]["lr"] and config["eval_split"] == "test"
    assert (out / "grid.toml").read_text() == grid_file.read_text()
    # a rerun has nothing left to do
    lines = []
    run_grid(load_grid(grid_file), progress=False, log=lines.append)
    assert "8 finished, 0 to run" in lines[0] and len(lines) == 1

    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    report = out / "report"
    text = (report / "report.md").read_text()
    assert "### conll, size-3 (3 training sentences)" in text and "### conll, size-6" in text
    assert "| fish-dip vs full |" in text and "wins" in text
    assert f"| fish-dip | {sweep['chosen']['lr']:g} (dev sweep: lr 0.001 → " in text  # the chosen rate, and why
    rows = (report / "report.csv").read_text().splitlines()
    assert rows[0].startswith("task,size,train_sentences,method,metric")
    assert any(r.startswith("conll,size-6,6.0,fish-dip,entity_f1,2,") for r in rows), rows
    for name in ("score-vs-size-conll", "losses-conll-size-3", "mask-overlap-conll-size-6",
                 "mask-location-conll-size-3-fish-dip", "samples-conll-size-6-fish-dip"):
        assert (report / f"{name}.png").stat().st_size > 1000, name
    assert "| comparison | episodes | relative change of the mean | paired difference [95 % CI] | Wilcoxon p |" in text
    for option in ("--baseline", "--focus"):  # a name that is no method of the grid: one line, exit 2
        refused = runner.invoke(app, ["report", str(out), option, "lora"])
        assert refused.exit_code == 2 and f"{option} 'lora': no finished cell of" in refused.output
        assert "(its methods: full, fish-dip)" in refused.output
    # a method whose refreshes choose layers, not masks (lisa's turns): reported, no mask plots
    for episode in (1, 2):
        cell = out / "conll/size-6/lisa" / f"episode-{episode}"
        shutil.copytree(out / "conll/size-6/full" / f"episode-{episode}", cell)
        results = json.loads((cell / "results.json").read_text())
        results["method"] = "lisa"
        train = results["episodes"][0]["train"]
        quarter = train["total_params"] // 4
        train["refreshes"] = [{"step": s, "layers": ["model.layers.0"], "learning_parameters": quarter} for s in (0, 3)]
        (cell / "results.json").write_text(json.dumps(results))
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "| lisa vs full |" in (report / "report.md").read_text()
    assert "| 25.00 % |" in (report / "report.md").read_text()  # the share that learns at a time
    assert not list(report.glob("mask-*-lisa.png"))


@pytest.mark.integration
def test_only_runs_a_slice_and_dry_run_runs_nothing(tmp_path, tiny_model_dir, monkeypatch):
    grid = load_grid(_grid(tmp_path, tiny_model_dir))
    lines = []
    # a cell stopped midway: the dry run names where its training checkpoint stands
    monkeypatch.setenv("FISHDIP_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    saved = checkpoint_path(grid.output_dir / "conll/size-6/full/episode-2", 2)
    saved.parent.mkdir(parents=True)
    torch.save({"where": {"step": 7}, "result": {"seconds": 150.0}}, saved)
    status = run_grid(grid, only=["conll/size-6/full"], progress=False, log=lines.append, dry_run=True)
    assert status == {"conll/size-6/full/episode-1": "pending", "conll/size-6/full/episode-2": "pending"}
    assert "checkpoint" not in lines[1] and lines[2].endswith("its training checkpoint: step 7, 2m trained)")
    saved.unlink()
    assert not (tmp_path / "out" / "conll").exists()
    status = run_grid(grid, only=["*/full/episode-2"], progress=False, log=lines.append)
    assert status == {"conll/size-3/full/episode-2": "finished", "conll/size-6/full/episode-2": "finished"}
    with pytest.raises(GridError, match="no cell"):
        run_grid(grid, only=["nothing"], progress=False, log=lines.append)
    # the time estimate counts a method's dev sweep once, on the first of its cells to run
    lines = []
    run_grid(grid, only=["conll/size-3/fish-dip"], progress=False, log=lines.append, dry_run=True)
    assert "2-run dev sweep included" in lines[1] and "sweep" not in lines[2], lines
    cell = next(c for c in grid.cells() if c.path == "conll/size-3/fish-dip/episode-1")
    cells = {("size-3", "fish-dip"): [100.0], ("size-6", "full"): [300.0]}
    assert estimate(cell, cells) == 100.0 and estimate(cell, cells, {}, sweep_runs=2) == 300.0
    assert estimate(cell, cells, {("size-6", "full"): [40.0]}, sweep_runs=2) == 180.0
    assert estimate(cell, {("size-6", "full"): [300.0]}) == 300.0 and estimate(cell, {}) is None
    # the grid file changes an option of finished cells: they are not silently kept, they are refused
    path = tmp_path / "grid.toml"
    path.write_text(path.read_text() + "\n[method.full]\nmax_grad_norm = 0.5\n")
    lines = []  # a dry run says so, cell by cell
    run_grid(load_grid(path), only=["*/full/episode-2"], progress=False, log=lines.append, dry_run=True)
    assert "0 finished, 2 to run" in lines[0] and "2 of them finished with other settings" in lines[0]
    assert lines[1].endswith("finished with other settings, recorded -> grid file: max-grad-norm: 1.0 -> 0.5)")
    status = run_grid(load_grid(path), only=["*/full/episode-2"], progress=False, log=lines.append)
    assert all(v.startswith("failed") and "holds a different run (max-grad-norm: 1.0 -> 0.5)" in v
               for v in status.values()), status


@pytest.mark.parametrize("extra, message", [
    ("colour = 3", "unknown key"),
    ("[method.lora]\nrank = 4", r"\[method.lora\] is not in `methods`"),
    ("[method.full]\ndensity = 2.0", "cell conll/size-3/full/episode-1: --density 2.0"),
    ("[method.full]\nepisodes = [3]", "set by the grid"),
    ("[method.full]\ntask = \"conll\"", r"\[method.full\]: task is set by the grid"),
    ("[[sizes]]\ntrain_size = 4\nmethod = \"full\"", r"sizes\[2\]: method is set by the grid"),
    # the recipe would replace it: refused although adamw is the option's default
    ("[[sizes]]\ntrain_size = 4\noptimizer = \"adamw\"", "fish-dip runs --recipe paper unless told otherwise"),
])
def test_bad_grid_files_are_refused_before_anything_runs(tmp_path, tiny_model_dir, extra, message):
    path = _grid(tmp_path, tiny_model_dir)
    text = path.read_text()
    text = extra + "\n" + text if "[" not in extra else text.replace("[sweep]\nepisodes = [1]\n", "") + extra + "\n"
    path.write_text(text)
    with pytest.raises(GridError, match=message):
        load_grid(path)
    assert not (tmp_path / "out").exists()


def test_paired_interval():
    p = paired({1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.4, 2: 0.4, 3: 0.6})
    # differences 0.1, 0.2, 0.1: mean 0.1333, sd 0.0577, t(0.975, 2) = 4.303
    assert p.n == 3 and p.wins == 3 and p.mean == pytest.approx(0.13333, abs=1e-4)
    assert p.high - p.mean == pytest.approx(4.3027 * 0.057735 / 3 ** 0.5, rel=1e-3)
    assert paired({1: 0.5}, {2: 0.4}) is None
    # Wilcoxon signed-rank, exact: 3 episodes all won is the smallest two-sided p there is, 2 / 2^3
    assert p.wilcoxon_p == pytest.approx(0.25)
    ten = paired({e: 0.1 * e for e in range(10)}, {e: 0.1 * e - (0.01 if e else -0.005) for e in range(10)})
    assert ten.n == 10 and ten.wins == 9 and ten.wilcoxon_p == pytest.approx(2 * 2 / 2 ** 10)
    assert math.isnan(paired({1: 0.5, 2: 0.5}, {1: 0.5, 2: 0.5}).wilcoxon_p)  # all tied: undefined


def test_a_comparison_is_decided_only_over_enough_episodes_with_an_interval_that_excludes_zero():
    three = paired({1: 0.5, 2: 0.52, 3: 0.71}, {1: 0.4, 2: 0.4, 3: 0.6})  # +0.11 [+0.085, +0.135]
    assert three.low > 0 and three.verdict(3) == "higher" and three.verdict(10) == "undecided at 3 episodes"
    assert paired({1: 0.4, 2: 0.4, 3: 0.6}, {1: 0.5, 2: 0.52, 3: 0.71}).verdict(3) == "lower"
    mixed = paired({1: 0.5, 2: 0.3, 3: 0.7}, {1: 0.4, 2: 0.4, 3: 0.6})  # one lost: the interval holds 0
    assert mixed.low < 0 < mixed.high and mixed.verdict(3) == "undecided at 3 episodes"
    assert paired({1: 0.9}, {1: 0.1}).verdict(1) == "undecided at 1 episode"  # no interval at all


def test_report_states_a_verdict_per_comparison(tmp_path):
    for method, scores_ in (("full", [0.40, 0.40, 0.60]), ("fish-dip", [0.50, 0.52, 0.71])):
        for episode, score in enumerate(scores_, 1):
            cell = tmp_path / "grid" / "conll" / "size-3" / method / f"episode-{episode}"
            cell.mkdir(parents=True)
            train = {"steps": 3, "seconds": 1.0, "total_params": 10, "trainable_params": 10,
                     "losses": [{"step": 1, "epoch": 0, "loss": 1.0}]}
            (cell / "results.json").write_text(json.dumps({"episodes": [
                {"episode": episode, "train_indices": [0, 1, 2], "metrics": {"entity_f1": score}, "train": train}]}))
            (cell / "config.json").write_text("{}")
    result = runner.invoke(app, ["report", str(tmp_path / "grid")])
    assert result.exit_code == 0, result.output
    assert "| 3/3 | undecided at 3 episodes |" in result.output and "at least 10 episodes" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "grid"), "--min-episodes", "3"])
    assert "| 3/3 | higher |" in result.output
    csv = (tmp_path / "grid" / "report" / "report.csv").read_text().splitlines()
    assert csv[0].endswith(",verdict") and any(row.startswith("conll,size-3,3.0,fish-dip,entity_f1,")
                                                and row.endswith(",higher") for row in csv)
    result = runner.invoke(app, ["report", str(tmp_path / "grid"), "--min-episodes", "1"])
    assert result.exit_code == 2 and "--min-episodes 1: a paired interval needs at least 2 episodes" in result.output


def test_one_episode_shows_no_spread():
    # a sample std needs two episodes; one episode is shown bare, not as "± 0.0"
    assert _mean_std([0.5]) == "50.0"
    assert _mean_std([0.4, 0.6]) == "50.0 ± 14.1"
    assert _mean_std([]) == "-"


def test_curves_of_episodes_that_stop_at_different_epochs_are_aligned():
    # the paper protocol's fish-dip episodes: scored every 100 epochs and where each stopped early
    stopped_275 = [(100, 12.7), (200, 9.3), (275, 10.7)]
    stopped_147 = [(100, 9.9), (147, 11.6)]
    stopped_496 = [(100, 9.8), (200, 1.2), (300, 5.0), (400, 3.8), (496, 4.9)]
    rows = dict(aligned_curve([stopped_275, stopped_147, stopped_496], also_at=[500]))
    # 147 and 275: the other episodes were still training, unscored -> no row; after its stop an
    # episode keeps its final score
    assert sorted(rows) == [100, 200, 300, 400, 496, 500]
    assert rows[200] == [9.3, 11.6, 1.2] and rows[300] == [10.7, 11.6, 5.0]
    assert rows[500] == [10.7, 11.6, 4.9]
    assert aligned_curve([[(2, 0.5)], []]) == [(2, [0.5])]  # an episode without a curve is left out


def test_report_without_cells_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no finished grid cells" in result.output


@pytest.mark.integration
def test_learning_curves_and_a_model_given_on_the_command_line(tmp_path, tiny_model_dir):
    grid_file = tmp_path / "curves.toml"
    grid_file.write_text(f"""
output_dir = "{tmp_path / 'out'}"
tasks = ["conll"]
episodes = [1, 2]
methods = ["full", "fish-dip"]

[options]
model = "t5-large"             # the paper's; replaced by --model
data_dir = "{_data(tmp_path)}"
eval_split = "test"
batch_size = 2
max_length = 48
save = "none"
eval_every = 2
curve_limit = 2
subset_sampling = "tanl"

[[sizes]]
train_size = 3
epochs = 2
""")
    result = runner.invoke(app, ["experiment", str(grid_file), "--model", str(tiny_model_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    config = json.loads((out / "conll/size-3/fish-dip/episode-2/config.json").read_text())
    assert config["model"] == str(tiny_model_dir) and config["subset_sampling"] == "tanl"
    assert (out / "grid.toml").read_text().startswith(f"# run as: fishdip experiment {grid_file} --model ")
    episode = json.loads((out / "conll/size-3/full/episode-1/results.json").read_text())["episodes"][0]
    assert [(c["step"], c["epoch"]) for c in episode["train"]["curve"]] == [(2, 1), (4, 2)]  # 2 steps an epoch
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report" / "report.md").read_text()
    assert "entity_f1 during training on the curve split" in text
    assert "| epoch | full | fish-dip |" in text and "\n| 1 | " in text and "\n| 2 | " in text
    # two methods: one paired table (fish-dip vs full), no bare header for "fish-dip against each method"
    assert "| fish-dip vs full |" in text and "`fish-dip` against each method" not in text
    assert (out / "report" / "curves-conll-size-3.png").stat().st_size > 1000


def test_mask_plots_leave_out_the_refreshes_a_closed_gate_skipped(tmp_path):
    from fishdip.reports.plots import masks_of, plot_mask_location, plot_mask_overlap, plot_samples

    def mask(step, overlap=None):
        record = {"step": step, "samples": [0], "ranking_losses": [1.0, 0.5],
                  "entries_per_parameter": {"model.layers.0.mlp.up_proj.weight": 10}}
        return record if overlap is None else {**record, "overlap_with_previous": overlap}

    kept = {"step": 99, "kept": True, "regressed": [], "ranking_losses": [1e-4, 1e-4]}
    train = {"refreshes": [mask(0), kept, mask(199, 0.4)], "losses": [{"loss": 1.0}]}
    assert [r["step"] for r in masks_of(train)] == [0, 199]
    episodes = [{"episode": 1, "train": train}]
    plot_mask_overlap({"fish-dip-gated": episodes}, tmp_path / "overlap.png", "t")
    plot_mask_location(episodes, tmp_path / "location.png", "t")
    plot_samples(episodes[0], tmp_path / "samples.png", "t")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("overlap", "location", "samples"))


def test_settings_table_counts_masks_chosen_and_refreshes_a_gate_kept():
    from fishdip.reports.grid import Group, settings_table

    def episode(refreshes, steps=300):
        return {"train": {"refreshes": refreshes, "steps": steps, "seconds": 10.0, "total_params": 100,
                          "trainable_params": 1, "refresh_seconds": 1.0}}

    chosen, kept = {"step": 0}, {"step": 99, "kept": True}
    group = Group("conll04", "fraction-0.01", runs={
        "fish-dip-gated": {2: episode([chosen, kept, chosen], 250), 1: episode([chosen, kept, kept])},
        "fish-dip-static": {1: episode([chosen]), 2: episode([chosen])},
        "full": {1: episode([]), 2: episode([])}})
    rows = settings_table(group).splitlines()
    assert "| masks chosen |" in rows[0]
    # episode order, not the order the runs were read in, in both columns
    assert "| 300/250 | 1.00 % | 1/2 (gate kept 2/1) |" in rows[2]
    assert "| 300 | 1.00 % | 1/1 |" in rows[3] and "gate kept" not in rows[3]
    assert "| - |" in rows[4]


def test_curve_pairs_pair_the_focus_with_each_method_at_every_scheduled_epoch():
    from fishdip.reports.grid import Group, curve_pairs

    def episode(points, stopped=None):  # one step an epoch
        return {"train": {"curve": [{"epoch": e, "step": e, "metrics": {"relation_f1": v}} for e, v in points],
                          "stopped_early": stopped}}

    group = Group("conll04", "fraction-0.01", runs={
        # episode 2 of fish-dip stopped at epoch 150: its last score counts at 200
        "fish-dip": {1: episode([(100, 0.30), (200, 0.20)]), 2: episode([(100, 0.20), (150, 0.10)], 150)},
        "full": {1: episode([(100, 0.10), (200, 0.10)]), 2: episode([(100, 0.10), (200, 0.20)])},
        "fish-dip-static": {1: episode([(100, 0.30), (200, 0.30)])}})
    text = curve_pairs(group, "relation_f1", "fish-dip")
    assert "| epoch | vs full | vs fish-dip-static |" in text
    assert "| 100 | +15.0 [-48.5, +78.5] 2/2 | +0.0 (1 episode) 0/1 (1 tied) |" in text
    assert "| 200 | +0.0 [-127.1, +127.1] 1/2 | -10.0 (1 episode) 0/1 |" in text
    assert "| 150 |" not in text  # one episode's early stop is no scheduled epoch
    assert curve_pairs(group, "relation_f1", "lora") == ""
