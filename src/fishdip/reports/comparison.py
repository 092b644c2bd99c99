"""Human-readable summaries of results: the comparison table of one run folder (plots: plots.py;
a grid's tables and statistics: grid.py)."""

from __future__ import annotations

from pathlib import Path

from fishdip.evaluation.predict import LIMIT_ERROR
from fishdip.io import write_json_atomic, write_text_atomic
from fishdip.reports.plots import plot_losses
from fishdip.tasks import METRICS


def _cell(stat: dict | None) -> str:
    if stat is None:
        return "-"
    if stat.get("n", 1) > 1:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
    return f"{100 * stat['mean']:.1f}"


def comparison_table(results: dict[str, dict], times: bool = True) -> str:
    """Markdown table, one row per method: scores (x100, mean ± std over episodes) and times."""
    shown = [m for m in METRICS if any(m in r["aggregate"] for r in results.values())]
    header = ["method", *shown, "format errors", "cut at limit"]
    header += ["train s/episode", "of it mask refreshes", "wall s/episode"] if times else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, res in results.items():
        agg = res["aggregate"]
        eps = res["episodes"]
        errors = sum(v for e in eps for k, v in e["metrics"]["errors"].items() if k != LIMIT_ERROR) / len(eps)
        cut = sum(e["metrics"]["errors"].get(LIMIT_ERROR, 0) for e in eps) / len(eps)
        row = [method, *(_cell(agg.get(m)) for m in shown), f"{errors:.1f}", f"{cut:.1f}"]
        if times:
            train_s = sum(e["train"]["seconds"] for e in eps)
            refresh_s = sum(e["train"].get("refresh_seconds", 0.0) for e in eps)
            row += [f"{train_s / len(eps):.0f}", f"{refresh_s / max(train_s, 1e-9):.0%}",
                    f"{sum(e['seconds'] for e in eps) / len(eps):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def describe_header(info: dict) -> str:
    """The lines above a comparison table: what was run and how to read the numbers."""
    episodes = info.get("episodes", [])
    return (f"# {info.get('task', '?')}: method comparison\n\n"
            f"- model: {info.get('model', '?')}\n"
            f"- training data: {info.get('training', '?')}; episodes {', '.join(map(str, episodes))} "
            f"(episode i draws its subset with seed i, the same for every method)\n"
            f"- evaluation: {info.get('evaluation', '?')}; decoder: {info.get('decoder', 'fishdip')}\n"
            + (f"- precision: {info['precision']}\n" if info.get("precision") else "") +
            "- scores are x100, mean ± sample std over episodes; format errors: annotations that could not "
            "be used (unknown type, missing type, text not found in the input, relation tail not found), "
            "per episode; cut at limit: sentences whose generation hit its token budget, per episode\n\n")


def write_comparison(results: dict[str, dict], out: Path, info: dict | None = None) -> str:
    """comparison.md (header + table), comparison.json and losses.png; returns the markdown."""
    info = dict(info or {})
    used = sorted({e["train"].get("precision", "fp32") for r in results.values() for e in r["episodes"]})
    if used and "precision" in info:
        info["precision"] = f"{', '.join(used)} (--precision {info['precision']})"
    text = describe_header(info) + comparison_table(results)
    write_text_atomic(out / "comparison.md", text)
    write_json_atomic(out / "comparison.json",
                      {"runs": info, **{m: {"aggregate": r["aggregate"], "episodes": len(r["episodes"])}
                                         for m, r in results.items()}})
    plot_losses(results, out / "losses.png", f"{info.get('task', '')} training loss, {info.get('training', '')}")
    return text
