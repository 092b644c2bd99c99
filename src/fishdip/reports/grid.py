"""``fishdip report RUNS_DIR``: a grid's results (runs/grid.py) as tables, statistics and plots.

Per task and training size: mean ± std of every metric per method; each method against a baseline
(default ``full``): relative change of the means and the paired difference over the episodes both
finished (same episode = same training subset), with a 95 % t interval, the Wilcoxon signed-rank
p-value, the number of episodes and wins, and a verdict (higher or lower only when the interval
excludes zero over at least ``min_episodes`` episodes, else "undecided at N episodes"); then the focus
method (default ``fish-dip``) against every other method the same way. Writes ``report.md``,
``report.csv`` (one row per task, size, method and metric) and PNG plots into ``RUNS_DIR/report/``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ImportError:  # Python 3.10: the same parser, packaged
    import tomli as tomllib

from fishdip.errors import FishdipError
from fishdip.io import read_json, write_text_atomic
from fishdip.reports.plots import (
    aligned_curve,
    masks_of,
    plot_curves,
    plot_losses,
    plot_mask_location,
    plot_mask_overlap,
    plot_samples,
    plot_score_vs_size,
    score_at,
)
from fishdip.tasks import METRICS

# Episodes a comparison needs before the report calls it decided (this project's rule, issue 35): with
# a few episodes an interval can exclude zero because their spread happened to be narrow.
MIN_EPISODES = 10


@dataclass
class Group:
    """The finished cells of one task and training size: method -> episode -> results.json episode."""

    task: str
    size: str
    runs: dict[str, dict[int, dict]] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)  # method -> a cell's config.json
    sweeps: dict[str, dict] = field(default_factory=dict)  # method -> sweep.json, where one ran

    def sentences(self) -> float:
        """Mean training sentences per episode (the x axis of score-vs-size)."""
        counts = [len(e["train_indices"]) for eps in self.runs.values() for e in eps.values() if "train_indices" in e]
        return statistics.fmean(counts) if counts else float("nan")


@dataclass
class Paired:
    n: int
    mean: float
    low: float
    high: float
    wins: int
    ties: int
    wilcoxon_p: float = math.nan  # two-sided Wilcoxon signed-rank p (exact for small n); nan: undefined

    def verdict(self, min_episodes: int) -> str:
        """What the comparison decides: "higher" / "lower" (the first against the second) when the 95 %
        interval excludes zero over at least ``min_episodes`` episodes, else "undecided at N episodes".
        The episode floor is there because a few episodes can exclude zero by chance of their spread."""
        if self.n >= min_episodes and self.n > 1 and (self.low > 0 or self.high < 0):
            return "higher" if self.low > 0 else "lower"
        return f"undecided at {self.n} episode{'s' if self.n != 1 else ''}"


def paired(a: dict[int, float], b: dict[int, float]) -> Paired | None:
    """``a`` minus ``b`` over the episodes both have: mean, 95 % t interval, wins of ``a``, and the
    Wilcoxon signed-rank p-value (no normality assumed; with n episodes it cannot go below 2 / 2^n,
    0.25 for 3)."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[e] - b[e] for e in common]
    mean = statistics.fmean(diffs)
    if len(diffs) > 1:
        half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    else:
        half = math.nan
    nonzero = [d for d in diffs if d != 0]  # ties are dropped (Wilcoxon's own rule); none left: undefined
    p = float(stats.wilcoxon(nonzero).pvalue) if nonzero else math.nan
    return Paired(len(diffs), mean, mean - half, mean + half, sum(d > 0 for d in diffs), sum(d == 0 for d in diffs),
                  p)


def collect(root: Path) -> tuple[list[Group], dict]:
    """Every finished cell under ``root`` (``<task>/<size>/<method>/episode-<i>/results.json``), in
    the grid file's order when ``root/grid.toml`` is there."""
    grid = tomllib.loads((root / "grid.toml").read_text()) if (root / "grid.toml").is_file() else {}
    groups: dict[tuple[str, str], Group] = {}
    for path in sorted(root.glob("*/*/*/episode-*/results.json")):
        task, size, method = path.parts[-5:-2]
        results = read_json(path)
        _check_results(path, results)
        group = groups.setdefault((task, size), Group(task, size))
        for episode in results.get("episodes", []):
            group.runs.setdefault(method, {})[episode["episode"]] = episode
        if results.get("episodes") and method not in group.configs:
            group.configs[method] = read_json(path.parent / "config.json")
            sweep = path.parents[1] / "sweep.json"
            if sweep.is_file():
                group.sweeps[method] = read_json(sweep)
    groups = {k: g for k, g in groups.items() if g.runs}
    if not groups:
        raise FishdipError(f"{root}: no finished grid cells (<task>/<size>/<method>/episode-<i>/results.json)")
    method_order = {m: i for i, m in enumerate(grid.get("methods", []))}
    task_order = {t: i for i, t in enumerate(grid.get("tasks", []))}
    ordered = sorted(groups.values(), key=lambda g: (task_order.get(g.task, 99), g.task, g.sentences()))
    for g in ordered:
        g.runs = dict(sorted(g.runs.items(), key=lambda kv: (method_order.get(kv[0], 99), kv[0])))
    return ordered, grid


def _check_results(path: Path, results) -> None:
    """A cell's results.json as fishdip writes it: episodes with a number, metrics and a training record
    whose fields the tables and plots read (steps, seconds, the loss of each step)."""
    episodes = results.get("episodes") if isinstance(results, dict) else None
    if not isinstance(episodes, list) or not all(
            isinstance(e, dict) and isinstance(e.get("episode"), int) and isinstance(e.get("metrics"), dict)
            and isinstance(e.get("train"), dict) for e in episodes):
        raise FishdipError(f"{path}: not a fishdip results file (expected 'episodes': a list of objects with "
                           "'episode', 'metrics' and 'train')")
    for e in episodes:
        problem = _train_problem(e["train"])
        if problem:
            raise FishdipError(f"{path}: episode {e['episode']}: its training record's {problem}")


def _train_problem(train: dict) -> str | None:
    """What is wrong with the training-record fields the tables and plots read, or None."""
    if not isinstance(train.get("steps"), int):
        return "'steps' is not a whole number"
    if not isinstance(train.get("seconds"), (int, float)):
        return "'seconds' is not a number"
    losses = train.get("losses")
    if not isinstance(losses, list) or not all(isinstance(x, dict) and isinstance(x.get("loss"), (int, float))
                                               for x in losses):
        return "'losses' is not a list of objects with a 'loss' number"
    return None


def scores(group: Group, method: str, metric: str) -> dict[int, float]:
    return {ep: e["metrics"][metric] for ep, e in group.runs.get(method, {}).items() if metric in e["metrics"]}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:+.1f}"


def _paired_text(p: Paired | None) -> tuple[str, str, str]:
    if p is None:
        return "-", "-", "-"
    interval = f"{_pct(p.mean)} [{_pct(p.low)}, {_pct(p.high)}]" if p.n > 1 else f"{_pct(p.mean)} (1 episode)"
    wilcoxon = "-" if math.isnan(p.wilcoxon_p) else f"{p.wilcoxon_p:.2g}"
    return interval, f"{p.wins}/{p.n}" + (f" ({p.ties} tied)" if p.ties else ""), wilcoxon


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) < 2:  # one episode has no spread; "± 0.0" would claim one
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def group_tables(group: Group, metric: str, baseline: str, focus: str | None, min_episodes: int = MIN_EPISODES) -> str:
    """Markdown for one task and size: scores, against the baseline, and the focus against the others."""
    shown = [m for m in METRICS if any(m in e["metrics"] for eps in group.runs.values() for e in eps.values())]
    lines = [f"### {group.task}, {group.size} ({group.sentences():.0f} training sentences)\n",
             "| method | episodes | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for method, eps in group.runs.items():
        lines.append(f"| {method} | {len(eps)} | "
                     + " | ".join(_mean_std(list(scores(group, method, m).values())) for m in shown) + " |")
    lines += ["", settings_table(group), ""]
    curve = curve_table(group, metric)
    if curve:
        lines += [curve, ""]
    pairs = curve_pairs(group, metric, focus) if focus else ""
    if pairs:
        lines += [pairs, ""]
    for reference, title in ((baseline, f"each method against `{baseline}`"),
                             (focus, f"`{focus}` against each method")):
        if reference not in group.runs:
            continue
        rows = []
        for method in group.runs:
            if method == reference or reference == focus and method == baseline and baseline in group.runs:
                continue  # the focus against the baseline is in the table above
            first, second = (method, reference) if reference == baseline else (reference, method)
            a, b = scores(group, first, metric), scores(group, second, metric)
            common = set(a) & set(b)
            if not common:
                continue
            ma, mb = statistics.fmean(a[e] for e in common), statistics.fmean(b[e] for e in common)
            relative = f"{100 * (ma - mb) / mb:+.0f} %" if mb else "-"
            p = paired(a, b)
            interval, wins, wilcoxon = _paired_text(p)
            rows.append(f"| {first} vs {second} | {len(common)} | {relative} | {interval} | {wilcoxon} | {wins} | "
                        f"{p.verdict(min_episodes)} |")
        if rows:  # with only the baseline beside the focus, this table would be a bare header
            lines += [f"{metric}, {title} (x100 points; paired over the episodes both finished, 95 % t interval, "
                      f"two-sided Wilcoxon signed-rank p; decided only where the interval excludes 0 over at least "
                      f"{min_episodes} episodes):\n",
                      "| comparison | episodes | relative change of the mean | paired difference [95 % CI] | "
                      "Wilcoxon p | wins | verdict |",
                      "|---|---|---|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def curve_table(group: Group, metric: str) -> str:
    """The learning curves (``--eval-every``) as a table: epoch x method, mean ± std over episodes on
    the epochs where each episode has a score (``aligned_curve``: a stopped episode keeps its last)."""
    series = {method: [[(c["epoch"], c["metrics"][metric]) for c in e["train"].get("curve", [])
                        if metric in c.get("metrics", {})] for e in eps.values()]
              for method, eps in group.runs.items()}
    all_epochs = {epoch for per_method in series.values() for points in per_method for epoch, _ in points}
    rows: dict[int, dict[str, list[float]]] = {}
    for method, per_method in series.items():
        for epoch, values in aligned_curve(per_method, also_at=all_epochs):
            rows.setdefault(epoch, {})[method] = values
    if not rows:
        return ""
    methods = [m for m in group.runs if any(m in row for row in rows.values())]
    lines = [f"{metric} during training on the curve split (x100, mean ± std over episodes; an episode that "
             "stopped keeps its last score; it describes the training dynamics, nothing was chosen on it):\n",
             "| epoch | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for epoch in sorted(rows):
        lines.append(f"| {epoch} | " + " | ".join(_mean_std(rows[epoch].get(m, [])) for m in methods) + " |")
    return "\n".join(lines)


def _curves(group: Group, method: str, metric: str) -> dict[int, dict[int, float]]:
    """Episode -> its curve points (epoch -> score) of ``method``."""
    return {ep: {c["epoch"]: c["metrics"][metric] for c in e["train"].get("curve", [])
                 if metric in c.get("metrics", {})}
            for ep, e in group.runs.get(method, {}).items()}


def curve_pairs(group: Group, metric: str, focus: str) -> str:
    """The focus method minus each other method on the curve split, paired by episode at each scheduled
    curve epoch: where a lead opens and where it closes (a final score alone cannot say). The point an
    early stop adds (off the schedule) is no row of its own; it is the score that episode keeps."""
    curves = {m: _curves(group, m, metric) for m in group.runs}
    if not any(curves.get(focus, {}).values()):
        return ""
    epochs = sorted({c["epoch"] for eps in group.runs.values() for e in eps.values()
                     for c in e["train"].get("curve", [])
                     if metric in c.get("metrics", {}) and c.get("step") != e["train"].get("stopped_early")})
    others = [m for m in group.runs if m != focus and any(curves[m].values())]
    if not others or not epochs:
        return ""
    lines = [f"{metric} on the curve split, `{focus}` minus each method, paired by episode at each curve epoch "
             "(x100 points, 95 % t interval, wins; an episode that stopped keeps its last score):\n",
             "| epoch | " + " | ".join(f"vs {m}" for m in others) + " |", "|---|" + "---|" * len(others)]
    for epoch in epochs:
        cells = []
        for m in others:
            a = {ep: v for ep, pts in curves[focus].items() if (v := score_at(pts, epoch)) is not None}
            b = {ep: v for ep, pts in curves[m].items() if (v := score_at(pts, epoch)) is not None}
            interval, wins, _ = _paired_text(paired(a, b))
            cells.append(f"{interval} {wins}" if wins != "-" else "-")
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_table(group: Group) -> str:
    """How each method ran: learning rate (and how it was chosen), steps, trainable share, time."""
    lines = ["| method | learning rate | optimizer steps | trainable | masks chosen | train s / episode | "
             "of it mask refreshes |", "|---|---|---|---|---|---|---|"]
    for method, eps in group.runs.items():
        train = [e["train"] for e in eps.values()]
        lr = group.configs.get(method, {}).get("train", {}).get("effective_lr")
        sweep = group.sweeps.get(method)
        how = "" if sweep is None else " (dev sweep: " + ", ".join(
            f"{_values(c)} → {100 * v:.1f}" for c, v in zip(sweep["candidates"], sweep["scores"])) + ")"
        steps = [eps[e]["train"]["steps"] for e in sorted(eps)]  # episode order, as the masks column
        steps = steps[:1] if len(set(steps)) == 1 else steps
        share = statistics.fmean(_learning(t) / t["total_params"] for t in train if t.get("total_params"))
        seconds = statistics.fmean(t["seconds"] for t in train)
        refresh = sum(t.get("refresh_seconds", 0.0) for t in train) / max(sum(t["seconds"] for t in train), 1e-9)
        lines.append(f"| {method} | {'-' if not lr else f'{lr:g}'}{how} | {'/'.join(map(str, steps))} | "
                     f"{100 * share:.2f} % | {_choices(eps)} | {seconds:.0f} | {refresh:.0%} |")
    return "\n".join(lines)


def _choices(episodes: dict[int, dict]) -> str:
    """Masks (lisa: layer turns) chosen per episode, in episode order, and the scheduled refreshes a
    closed ``--refresh-gate`` kept the mask at: how often what learns changed."""
    records = [episodes[e]["train"].get("refreshes", []) for e in sorted(episodes)]
    if not any(records):
        return "-"
    chosen = "/".join(str(len([r for r in rs if not r.get("kept")])) for rs in records)
    kept = [len([r for r in rs if r.get("kept")]) for rs in records]
    return chosen + (f" (gate kept {'/'.join(map(str, kept))})" if any(kept) else "")


def _values(candidate: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in candidate.items())


def csv_rows(groups: list[Group], baseline: str, min_episodes: int = MIN_EPISODES) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "size", "train_sentences", "method", "metric", "episodes", "mean", "std",
                     f"diff_vs_{baseline}", "ci_low", "ci_high", "wins", "paired_episodes", "wilcoxon_p", "verdict"])
    for g in groups:
        for method in g.runs:
            for metric in METRICS:
                values = scores(g, method, metric)
                if not values:
                    continue
                v = list(values.values())
                p = paired(values, scores(g, baseline, metric)) if method != baseline else None
                writer.writerow([g.task, g.size, f"{g.sentences():.1f}", method, metric, len(v),
                                 f"{statistics.fmean(v):.6f}", f"{statistics.stdev(v):.6f}" if len(v) > 1 else "",
                                 *(["", "", "", "", "", "", ""] if p is None else
                                   [f"{p.mean:.6f}", f"{p.low:.6f}", f"{p.high:.6f}", p.wins, p.n,
                                    "" if math.isnan(p.wilcoxon_p) else f"{p.wilcoxon_p:.6f}",
                                    p.verdict(min_episodes)])])
    return out.getvalue()


def _learning(train: dict) -> int:
    """Parameters that learn at a time: lisa's layer turns record theirs (runs before the trainer
    counted them recorded every parameter as trainable)."""
    turns = [r["learning_parameters"] for r in train.get("refreshes", []) if "learning_parameters" in r]
    return max(turns) if turns else train["trainable_params"]


def write_report(root: str | Path, output: str | Path | None = None, metric: str | None = None,
                 baseline: str | None = None, focus: str | None = None, min_episodes: int | None = None) -> Path:
    """Tables (report.md, report.csv) and plots of the grid in ``root``; returns the report folder.
    ``baseline`` (default ``full``, else the first method) is compared with every other method,
    ``focus`` (default ``fish-dip`` where the grid has it) with every other; a name given that is no
    method of the grid is refused. A comparison is decided over at least ``min_episodes`` episodes."""
    min_episodes = MIN_EPISODES if min_episodes is None else min_episodes
    if min_episodes < 2:
        raise FishdipError(f"--min-episodes {min_episodes}: a paired interval needs at least 2 episodes")
    root = Path(root)
    groups, grid = collect(root)
    methods = list(dict.fromkeys(m for g in groups for m in g.runs))
    for option, name in (("--baseline", baseline), ("--focus", focus)):
        if name is not None and name not in methods:
            raise FishdipError(f"{option} {name!r}: no finished cell of {root} has that method "
                               f"(its methods: {', '.join(methods)})")
    baseline = baseline or ("full" if "full" in methods else methods[0])
    focus = focus or ("fish-dip" if "fish-dip" in methods else None)
    if metric is not None and metric not in METRICS:
        raise FishdipError(f"--metric {metric!r}: not a metric fishdip reports (one of {', '.join(METRICS)})")
    reported = [m for m in METRICS if any(m in e["metrics"] for g in groups for r in g.runs.values()
                                               for e in r.values())]
    metric = metric or grid.get("metric") or (reported[0] if reported else None)
    if metric not in reported:
        raise FishdipError(f"{root}: no finished cell reports {metric!r}" if metric else
                           f"{root}: the finished cells report none of fishdip's metrics")
    out = Path(output) if output else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    text = [f"# Grid report: {root}\n",
            f"Scores x100, mean ± sample std over episodes. Headline metric: {metric}. Episode i trains every "
            "method on the same subset (seed i), so differences are paired by episode. Plots beside this file.\n"]
    text += [group_tables(g, metric, baseline, focus, min_episodes) for g in groups]
    write_text_atomic(out / "report.md", "\n".join(text))
    write_text_atomic(out / "report.csv", csv_rows(groups, baseline, min_episodes))
    _plots(groups, out, metric)
    return out


def _plots(groups: list[Group], out: Path, metric: str) -> None:
    for task in dict.fromkeys(g.task for g in groups):
        points: dict[str, list] = {}
        for g in (g for g in groups if g.task == task):
            for method in g.runs:
                values = list(scores(g, method, metric).values())
                if values:
                    points.setdefault(method, []).append((g.sentences(), values))
        plot_score_vs_size(points, out / f"score-vs-size-{task}.png", metric, f"{task}: {metric} against training size")
    for g in groups:
        name = f"{g.task}-{g.size}"
        plot_losses({m: {"episodes": list(eps.values())} for m, eps in g.runs.items()}, out / f"losses-{name}.png",
                    f"{g.task}, {g.size}: training loss")
        if any(e["train"].get("curve") for eps in g.runs.values() for e in eps.values()):
            plot_curves({m: list(eps.values()) for m, eps in g.runs.items()}, out / f"curves-{name}.png", metric,
                        f"{g.task}, {g.size}: {metric} during training")
        # methods whose masks change (lisa's layer turns are recorded as refreshes too, with no mask)
        dynamic = {m: list(eps.values()) for m, eps in g.runs.items()
                   if all(len(masks_of(e["train"])) > 1 and "overlap_with_previous" in masks_of(e["train"])[1]
                          for e in eps.values())}
        if dynamic:
            plot_mask_overlap(dynamic, out / f"mask-overlap-{name}.png", f"{g.task}, {g.size}: consecutive masks")
        for method, episodes in dynamic.items():
            if all("entries_per_parameter" in r for e in episodes for r in masks_of(e["train"])):
                plot_mask_location(episodes, out / f"mask-location-{name}-{method}.png",
                                   f"{g.task}, {g.size}, {method}: where the mask lives")
            first = episodes[0]
            if all("ranking_losses" in r for r in first["train"]["refreshes"]):
                plot_samples(first, out / f"samples-{name}-{method}.png",
                             f"{g.task}, {g.size}, {method}, episode {first['episode']}: regressing samples")
