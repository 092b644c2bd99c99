"""PNG plots of runs (matplotlib, no display needed): losses, scores against training size, and what
FISH-DIP's masks and sample choices did. Every function takes plain results.json content and writes
one file atomically."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def figure(path: Path, ncols: int = 1, size: tuple[float, float] = (7, 4.5)):
    """A figure with ``ncols`` axes, saved to ``path`` (through a temporary file) when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, squeeze=False)
    try:
        yield fig, list(axes[0])
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    finally:
        plt.close(fig)


def _mean_band(ax, x, curves, label: str, **style):
    """Mean of equal-length curves, with a band of one sample std when there are several."""
    import numpy as np

    values = np.array(curves, dtype=float)
    mean = values.mean(axis=0)
    (line,) = ax.plot(x, mean, label=label, **style)
    if len(curves) > 1:
        std = values.std(axis=0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    return line


def _from_zero(ax) -> None:
    """A score axis from zero, with room above the highest point: a change of a fraction of a point
    must not fill the whole height of the plot and look like a collapse."""
    ax.set_ylim(0, max(ax.get_ylim()[1], 1e-9) * 1.15)


def masks_of(train: dict) -> list[dict]:
    """The refresh records of a training run that chose a mask (a closed --refresh-gate keeps the
    previous one and records only its ranking: ``kept``)."""
    return [r for r in train.get("refreshes", []) if not r.get("kept")]


def plot_losses(results: dict[str, dict], path: Path, title: str = "") -> None:
    """Training loss per optimizer step, one line per method: the mean over episodes, with a band
    of one standard deviation when there are several; dotted lines mark fish-dip mask refreshes."""
    with figure(path) as (fig, (ax,)):
        refreshes_drawn = False
        for method, res in results.items():
            curves = [[x["loss"] for x in e["train"]["losses"]] for e in res["episodes"] if e["train"]["losses"]]
            if not curves:
                continue
            steps = min(len(c) for c in curves)  # episodes of one run have the same number of steps
            label = method + (f" (mean of {len(curves)} episodes)" if len(curves) > 1 else "")
            line = _mean_band(ax, range(1, steps + 1), [c[:steps] for c in curves], label)
            for refresh in masks_of(res["episodes"][0]["train"])[1:]:
                ax.axvline(refresh["step"], color=line.get_color(), alpha=0.35, lw=0.8, ls=":",
                           label=None if refreshes_drawn else "mask refresh")
                refreshes_drawn = True
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (mean over the step's samples)")
        ax.set_title(title or "Training loss per method")
        if ax.get_legend_handles_labels()[0]:  # nothing to label when no method trained (icl)
            ax.legend()


def plot_score_vs_size(points: dict[str, list[tuple[float, list[float]]]], path: Path, metric: str,
                       title: str) -> None:
    """``points``: method -> [(training sentences, scores of its episodes)], one line per method with a
    band of one std over episodes."""
    import numpy as np

    with figure(path) as (fig, (ax,)):
        for method, series in points.items():
            series = sorted(series)
            x = [s for s, _ in series]
            mean = np.array([np.mean(v) for _, v in series]) * 100
            std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for _, v in series]) * 100
            (line,) = ax.plot(x, mean, marker="o", label=method)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("training sentences (log scale)")
        ax.set_ylabel(f"{metric} (x100; mean ± std over episodes)")
        _from_zero(ax)
        ax.set_title(title)
        ax.legend(fontsize=8)


def aligned_curve(series: list[list[tuple[int, float]]], also_at: Iterable[int] = ()) -> list[tuple[int, list[float]]]:
    """Episodes' curve points ((epoch, score) each) on the epochs where every episode has a score.

    After its last point an episode's training has ended (an early stop or its last step), so the
    model it was tested with keeps that score: it counts at later epochs too. An epoch at which an
    episode was still training but not scored (another episode's early stop) is left out, so each
    mean is over the same episodes and a curve does not jump where one episode ends. ``also_at``:
    more epochs to place the episodes at (another method's, for a table of several)."""
    series = [dict(s) for s in series if s]
    epochs = sorted({e for s in series for e in s} | set(also_at))
    rows = []
    for epoch in epochs:
        values = [score_at(s, epoch) for s in series]
        if None not in values:
            rows.append((epoch, values))
    return rows


def score_at(points: dict[int, float], epoch: int) -> float | None:
    """An episode's score at ``epoch`` (its curve points, epoch -> score): its point there, or its last
    one once its training has ended; None where it trained on unscored."""
    if epoch in points:
        return points[epoch]
    return points[max(points)] if points and epoch > max(points) else None


def plot_curves(runs: dict[str, list[dict]], path: Path, metric: str, title: str) -> None:
    """Learning curves (``--eval-every``): ``runs`` is method -> its episodes (results.json). Left: the
    curve split's ``metric`` against epochs, mean ± std over episodes; right: the training loss per
    epoch (log scale), one line per episode."""
    import numpy as np

    with figure(path, ncols=2, size=(12, 4.5)) as (fig, (score_ax, loss_ax)):
        for method, episodes in runs.items():
            points = [[(c["epoch"], 100 * c["metrics"][metric]) for c in e["train"].get("curve", [])
                       if metric in c.get("metrics", {})] for e in episodes]
            points = [p for p in points if p]
            color = None
            if points:
                rows = aligned_curve(points)
                x = [epoch for epoch, _ in rows]
                mean = np.array([np.mean(v) for _, v in rows])
                label = f"{method} ({len(points)} episode{'s' if len(points) > 1 else ''})"
                (line,) = score_ax.plot(x, mean, marker="o", label=label)
                color = line.get_color()
                if len(points) > 1:
                    std = np.array([np.std(v, ddof=1) for _, v in rows])
                    score_ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
                    for series in points:  # each episode's own points, thin: where it was scored and stopped
                        score_ax.plot(*zip(*series), color=color, linewidth=0.7, alpha=0.5, marker=".")
            losses = []
            for e in episodes:
                per_epoch: dict[int, list[float]] = {}
                for step in e["train"]["losses"]:
                    per_epoch.setdefault(step.get("epoch", 0) + 1, []).append(step["loss"])
                losses.append([(k, max(float(np.mean(v)), 1e-12)) for k, v in sorted(per_epoch.items())])
            # one line per episode: episodes stop early at different epochs, and a mean over those
            # still running would jump where one of them ends
            for i, series in enumerate(series for series in losses if series):
                epochs, values = zip(*series)
                (line,) = loss_ax.plot(epochs, values, color=color, linewidth=1, alpha=0.8, label=None if i else method)
                color = line.get_color()
        score_ax.set_xlabel("epoch")
        score_ax.set_ylabel(f"{metric} x100 on the curve split\n(mean ± std; thin: each episode)")
        _from_zero(score_ax)
        score_ax.set_title(title)
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("training loss (mean over the epoch's steps; log scale)")
        loss_ax.set_title("training loss, one line per episode")
        for ax in (score_ax, loss_ax):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)


MODULE_KINDS = ("attention", "mlp", "embeddings", "norms", "other")


def module_kind(name: str) -> str:
    """Attention q/k/v/o, MLP, embeddings (and LM head), norms, for T5, BART and Llama-style names."""
    n = name.lower()
    if "norm" in n:
        return "norms"
    if any(k in n for k in ("embed", "shared", "lm_head", "wte", "wpe")):
        return "embeddings"
    if any(k in n for k in ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "out_proj")):
        return "attention"
    if any(k in n for k in ("mlp", "densereludense", "fc1", "fc2", "gate_proj", "up_proj", "down_proj", ".ff")):
        return "mlp"
    return "other"


def layer_of(name: str) -> str | None:
    """``model.layers.3.…`` -> "3"; T5's ``decoder.block.3.…`` -> "decoder 3"; None outside layers."""
    match = re.search(r"(?:^|\.)(?:layers|block|layer|h)\.(\d+)\.", name)
    if not match:
        return None
    side = "encoder " if name.startswith("encoder") or ".encoder." in name else \
        "decoder " if name.startswith("decoder") or ".decoder." in name else ""
    return f"{side}{match.group(1)}"


def plot_mask_location(episodes: list[dict], path: Path, title: str) -> None:
    """Where the masks of a run live, refresh by refresh (mean over episodes): left, the share of
    trainable entries per module kind; right, the share per layer."""
    import numpy as np

    refreshes = min(len(masks_of(e["train"])) for e in episodes)
    counts = [[r.get("entries_per_parameter", {}) for r in masks_of(e["train"])[:refreshes]] for e in episodes]
    names = sorted({n for ep in counts for r in ep for n in r})
    layers = sorted({layer_of(n) for n in names if layer_of(n) is not None},
                    key=lambda s: (s.split()[0] if " " in s else "", int(s.split()[-1])))

    def shares(key, labels):
        out = np.zeros((len(labels), refreshes))
        for ep in counts:
            for j, r in enumerate(ep):
                total = sum(r.values()) or 1
                for name, c in r.items():
                    label = key(name)
                    if label in labels:
                        out[labels.index(label), j] += c / total / len(counts)
        return out

    kinds = shares(module_kind, list(MODULE_KINDS))
    per_layer = shares(layer_of, layers)
    steps = [r["step"] for r in masks_of(episodes[0]["train"])[:refreshes]]
    with figure(path, ncols=2, size=(12, 4.5)) as (fig, (left, right)):
        for kind, row in zip(MODULE_KINDS, kinds):
            if row.any():
                left.plot(steps, row * 100, marker="o", label=kind)
        left.set_xlabel("mask chosen at optimizer step")
        left.set_ylabel("share of trainable entries (%)")
        left.set_title("by module kind")
        left.legend(fontsize=8)
        image = right.imshow(per_layer * 100, aspect="auto", origin="lower", cmap="viridis")
        right.set_yticks(range(len(layers)), labels=layers, fontsize=6)
        right.set_xticks(range(len(steps)), labels=[str(s) for s in steps], fontsize=7)
        right.set_xlabel("mask chosen at optimizer step")
        right.set_title("by layer (% of trainable entries)")
        fig.colorbar(image, ax=right)
        fig.suptitle(title)


def jaccard(overlap_share: float) -> float:
    """Two masks of k entries sharing a fraction ``o`` of them: Jaccard o·k / (2k − o·k)."""
    return overlap_share / (2 - overlap_share)


def plot_mask_overlap(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    """Jaccard overlap of each mask with the one before it, per method (mean over episodes)."""
    with figure(path) as (fig, (ax,)):
        for method, episodes in runs.items():
            curves = [[jaccard(r["overlap_with_previous"]) for r in masks_of(e["train"])[1:]] for e in episodes]
            steps = min(len(c) for c in curves)
            if steps == 0:
                continue
            x = [r["step"] for r in masks_of(episodes[0]["train"])[1:steps + 1]]
            _mean_band(ax, x, [c[:steps] for c in curves], method, marker="o")
        ax.set_ylim(0, 1)
        ax.set_xlabel("mask chosen at optimizer step")
        ax.set_ylabel("Jaccard overlap with the previous mask")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)


def plot_samples(episode: dict, path: Path, title: str) -> None:
    """One episode of fish-dip: left, how often each training sample was among the regressing ones;
    right, every sample's loss at each ranking, the chosen ones marked (a ranking after which a
    closed --refresh-gate kept the mask chose none)."""
    refreshes = [r for r in episode["train"]["refreshes"] if "ranking_losses" in r]
    chosen = Counter(i for r in refreshes for i in r.get("samples", []))
    n = len(refreshes[0]["ranking_losses"])
    steps = [r["step"] for r in refreshes]
    with figure(path, ncols=2, size=(12, 4.5)) as (fig, (left, right)):
        left.bar(range(n), [chosen.get(i, 0) for i in range(n)], color="tab:orange")
        left.set_xlabel("training sample (index in the episode's subset)")
        left.set_ylabel(f"times chosen (of {sum('samples' in r for r in refreshes)} masks)")
        left.set_title("regressing-sample choices")
        left.yaxis.get_major_locator().set_params(integer=True)
        for i in range(n):
            losses = [r["ranking_losses"][i] for r in refreshes]
            right.plot(steps, losses, color="tab:gray", alpha=0.35, lw=0.8)
        for r in (r for r in refreshes if "samples" in r):
            right.scatter([r["step"]] * len(r["samples"]), [r["ranking_losses"][i] for i in r["samples"]],
                          color="tab:orange", s=14, zorder=3)
        right.set_yscale("log")
        right.set_xlabel("ranked at optimizer step")
        right.set_ylabel("sample loss (log scale); chosen in orange")
        right.set_title("every sample's loss at each ranking")
        fig.suptitle(title)
