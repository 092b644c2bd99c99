"""Read a grid's finished sparse cells by ``--refresh-gate regressing``'s rule.

At every ranking a cell recorded (fish-dip's refreshes, the gated arm's scheduled rankings), which
samples' mean per-token loss rose since the previous ranking, and which of those were above the
gate's threshold: the samples that would have opened the gate. The records keep each sample's
*summed* token loss when the recipe ranks by sums (the paper's); the token counts come from encoding
the episode's training pairs again, by the trainer itself. Recorded losses carry 4 significant digits,
so a comparison inside that rounding can differ from the run's own: a gated cell's own decisions are
shown beside the reading, and must agree.

    python scripts/gate_reading.py docs/results/conll04-control/grid.toml docs/results/conll04-control

Prints a markdown table and writes OUTPUT_DIR/gate-reading.json. Loads each model once, for its
tokenizer (the embedded model: a few seconds, no training).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fishdip.io import write_json_atomic
from fishdip.models.loading import load_model
from fishdip.runs.experiment import episode_pairs, episode_train_config
from fishdip.runs.grid import cell_config, load_grid
from fishdip.sparse.choices import GATE_MIN_LOSS
from fishdip.sparse.selection import regressed_samples
from fishdip.training.trainer import Trainer


def read_rankings(refreshes: list[dict], tokens: list[int] | None) -> list[dict]:
    """One row per recorded ranking: its highest mean per-token loss, the samples whose loss rose since
    the previous ranking, those the gate's rule counts as regressed, and the run's own gate decision
    where it recorded one. ``tokens``: each sample's target tokens when the losses are sums, else None."""
    rows, previous = [], None
    for record in refreshes:
        if "ranking_losses" not in record:  # a mask chosen without ranking (e.g. random samples)
            continue
        losses = torch.tensor(record["ranking_losses"], dtype=torch.float32)
        per_token = losses / torch.tensor(tokens, dtype=torch.float32).clamp(min=1) if tokens else losses
        row = {"step": record["step"], "max_per_token": float(per_token.max())}
        if previous is not None:
            row["rose"] = (per_token > previous).nonzero().flatten().tolist()
            row["regressed"] = regressed_samples(per_token, previous)
        if "regressed" in record:
            row["recorded"] = record["regressed"]
        rows.append(row)
        previous = per_token
    return rows


def _target_tokens(grid, cell, models: dict) -> tuple[list[int] | None, int]:
    """What the cell's gate divides its ranking losses by: the trainer's own engine, built (not run)
    on the episode's pairs, holds each sample's target tokens when it ranks by summed losses."""
    cfg = cell_config(grid, cell, {})
    pairs = episode_pairs(cfg, cell.episode)
    if cfg.model not in models:
        models[cfg.model] = load_model(cfg.model)
    tokens = Trainer(models[cfg.model], pairs, episode_train_config(cfg, cell.episode), progress=False).engine.tokens
    return (None if tokens is None else [int(t) for t in tokens]), len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid")
    parser.add_argument("output_dir")
    args = parser.parse_args()
    grid = load_grid(args.grid, args.output_dir)
    models: dict = {}
    cells = {}
    for cell in grid.cells():
        path = Path(args.output_dir) / cell.path / "results.json"
        if not path.exists():
            continue
        refreshes = json.loads(path.read_text())["episodes"][0]["train"].get("refreshes", [])
        if sum("ranking_losses" in r for r in refreshes) < 2:  # nothing to compare (one mask, or none)
            continue
        tokens, samples = _target_tokens(grid, cell, models)
        cells[cell.path] = {"samples": samples, "target_tokens": tokens,
                            "rankings": read_rankings(refreshes, tokens)}
    write_json_atomic(Path(args.output_dir) / "gate-reading.json",
                      {"grid": args.grid, "gate_min_loss": GATE_MIN_LOSS, "cells": cells})
    print(f"| cell | ranking after step | highest mean per-token loss | rose since the previous ranking | "
          f"rose and above {GATE_MIN_LOSS:g} (the gate's rule) | the run's own gate |")
    print("|---|---|---|---|---|---|")
    for path, cell in cells.items():
        for row in cell["rankings"][1:]:
            own = "-" if "recorded" not in row else ("kept the mask" if not row["recorded"] else
                                                     f"opened: {row['recorded']}")
            print(f"| {path} | {row['step']} | {row['max_per_token']:.2e} | {len(row['rose'])} of {cell['samples']} "
                  f"| {len(row['regressed'])} | {own} |")


if __name__ == "__main__":
    main()
