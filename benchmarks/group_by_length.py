"""Benchmark: what --group-by-length saves (padding, and the time of a step).

A step's micro-batches are padded to their longest sentence. The option re-cuts each optimizer step's
sentences, shortest first, into micro-batches of the same sizes: the same sentences per step, fewer
padded positions.
  1. positions: for every episode of a grid's cell (default: the control grid's CoNLL04 1 % `full`
     cells, episodes 4-13, batch 8 x 4 micro-batches), the positions a step runs over (padding
     included) under the trainer's own shuffles for every epoch of the run, without and with the option;
  2. time: ``--steps`` optimizer steps of the cell's method on one episode's pairs (the embedded model,
     ``--threads`` threads), each way in turn from the same weights: median seconds a step, and the
     ratio, measured in one run.

Prints a table and writes JSON (default benchmarks/results/group-by-length-<device>.json).

Run:  FISHDIP_DATA_DIR=../shared/data python benchmarks/group_by_length.py [--cell conll04/fraction-0.01/full]
          [--timed-episode 5] [--steps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from fishdip.io import write_json_atomic
from fishdip.models.encoding import padded_positions
from fishdip.models.loading import load_model
from fishdip.runs.experiment import episode_pairs, episode_train_config
from fishdip.runs.grid import cell_config, load_grid
from fishdip.training.config import TrainConfig
from fishdip.training.precision import machine
from fishdip.training.trainer import Trainer

GRID = "docs/results/conll04-control/grid.toml"


def episode_setup(grid, cell) -> tuple[list[tuple[str, str]], TrainConfig]:
    """The cell's training pairs and train config, seeded as the experiment runner seeds an episode."""
    cfg = cell_config(grid, cell, {})
    return episode_pairs(cfg, cell.episode), episode_train_config(cfg, cell.episode)


def positions_per_step(loaded, pairs, train: TrainConfig, grouped: bool) -> float:
    """Mean positions an optimizer step runs over, over every epoch's shuffle of the run."""
    trainer = Trainer(loaded, pairs, replace(train, group_by_length=grouped), progress=False)
    shuffler = torch.Generator().manual_seed(trainer.cfg.seed)  # the trainer's own stream of epoch orders
    per_step = []
    for _ in range(train.epochs):
        order = torch.randperm(len(pairs), generator=shuffler).tolist()
        per_step += [sum(padded_positions([trainer.encoded[i] for i in batch]) for batch in group)
                     for group in trainer.step_groups(order)]
    return statistics.fmean(per_step)


def timed_steps(model: str, pairs, train: TrainConfig, grouped: bool, steps: int) -> dict:
    loaded = load_model(model)  # fresh weights for each run
    result = Trainer(loaded, pairs, replace(train, group_by_length=grouped, halt_step=steps, stop_loss=None),
                     progress=False, log=lambda *_: None).train()
    seconds = [x["seconds"] for x in result.losses]
    return {"seconds": seconds, "median_seconds": statistics.median(seconds),
            "positions_per_step": result.padded_tokens / result.steps,
            "tokens_per_step": result.train_tokens / result.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=GRID)
    parser.add_argument("--cell", default="conll04/fraction-0.01/full", help="task/size/method of the grid's cells")
    parser.add_argument("--timed-episode", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps each way (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = load_grid(args.grid)
    cells = {c.episode: c for c in grid.cells() if c.path.startswith(args.cell + "/")}
    if not cells:
        raise SystemExit(f"{args.grid}: no cell under {args.cell}")
    setups = {e: episode_setup(grid, c) for e, c in sorted(cells.items())}
    model = cell_config(grid, next(iter(cells.values())), {}).model
    loaded = load_model(model)
    episodes = {}
    for episode, (pairs, train) in setups.items():
        plain, grouped = (positions_per_step(loaded, pairs, train, g) for g in (False, True))
        episodes[episode] = {"plain": plain, "grouped": grouped, "ratio": grouped / plain}
        print(f"episode {episode}: {plain:.0f} -> {grouped:.0f} positions a step ({grouped / plain:.2f}x)", flush=True)
    timed = {}
    if args.steps:
        pairs, train = setups[args.timed_episode]
        timed = {"episode": args.timed_episode, "steps": args.steps,
                 **{name: timed_steps(model, pairs, train, g, args.steps) for name, g in (("plain", False),
                                                                                     ("grouped", True))}}
        timed["ratio"] = timed["grouped"]["median_seconds"] / timed["plain"]["median_seconds"]
    device = torch.device("cpu")
    out = {"machine": machine(device), "threads": args.threads, "grid": args.grid, "cell": args.cell,
           "batch_size": train.batch_size, "grad_accum_steps": train.grad_accum_steps, "episodes": episodes,
           "timed": timed}
    path = args.output or Path(__file__).parent / "results" / f"group-by-length-{device.type}.json"
    write_json_atomic(path, out)
    print(f"\n{args.cell}, batch {train.batch_size} x {train.grad_accum_steps} micro-batches, {out['machine']}\n")
    print("| episode | positions a step | with --group-by-length | ratio |\n|---|---|---|---|")
    for episode, row in episodes.items():
        print(f"| {episode} | {row['plain']:.0f} | {row['grouped']:.0f} | {row['ratio']:.2f} |")
    if timed:
        p, g = timed["plain"], timed["grouped"]
        print(f"\nepisode {timed['episode']}, {args.steps} steps each, {args.threads} thread(s): "
              f"{p['median_seconds']:.1f} s a step ({p['positions_per_step']:.0f} positions) -> "
              f"{g['median_seconds']:.1f} s ({g['positions_per_step']:.0f}): {timed['ratio']:.2f}x")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
