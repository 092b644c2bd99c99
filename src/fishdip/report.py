"""Human-readable summaries of results: tables and loss plots."""

from __future__ import annotations

from pathlib import Path

from fishdip.evaluation.predict import LIMIT_ERROR
from fishdip.io import write_json_atomic, write_text_atomic

ALL_METRICS = ("entity_f1", "relation_f1", "entity_macro_f1", "relation_macro_f1", "entity_f1_no_type",
               "relation_f1_no_type", "argument_f1",
               "trigger_classification_f1", "argument_classification_f1", "joint_goal_accuracy", "accuracy")


def _cell(stat: dict | None) -> str:
    if stat is None:
        return "-"
    if stat.get("n", 1) > 1:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
    return f"{100 * stat['mean']:.1f}"


def comparison_table(results: dict[str, dict], times: bool = True) -> str:
    """Markdown table, one row per method: scores (x100, mean ± std over episodes) and times."""
    shown = [m for m in ALL_METRICS if any(m in r["aggregate"] for r in results.values())]
    header = ["method", *shown, "format errors", "cut at limit"]
    header += ["train s/episode", "wall s/episode"] if times else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, res in results.items():
        agg = res["aggregate"]
        eps = res["episodes"]
        errors = sum(v for e in eps for k, v in e["metrics"]["errors"].items() if k != LIMIT_ERROR) / len(eps)
        cut = sum(e["metrics"]["errors"].get(LIMIT_ERROR, 0) for e in eps) / len(eps)
        row = [method, *(_cell(agg.get(m)) for m in shown), f"{errors:.1f}", f"{cut:.1f}"]
        if times:
            row += [f"{sum(e['train']['seconds'] for e in eps) / len(eps):.0f}",
                    f"{sum(e['seconds'] for e in eps) / len(eps):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_losses(results: dict[str, dict], path: Path) -> None:
    """Training loss per optimizer step, one line per method (first episode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, res in results.items():
        losses = res["episodes"][0]["train"]["losses"]
        ax.plot([x["step"] for x in losses], [x["loss"] for x in losses], label=method)
        for refresh in res["episodes"][0]["train"]["refreshes"][1:]:
            ax.axvline(refresh["step"], color="grey", alpha=0.2, lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_comparison(results: dict[str, dict], out: Path) -> str:
    table = comparison_table(results)
    write_text_atomic(out / "comparison.md", table)
    write_json_atomic(out / "comparison.json",
                      {m: {"aggregate": r["aggregate"], "episodes": len(r["episodes"])}
                       for m, r in results.items()})
    plot_losses(results, out / "losses.png")
    return table
