"""Benchmark: how long a FISH-DIP mask refresh and a training step take, sparse vs full.

Builds a randomly initialised model of a real architecture's shape (no download), a
synthetic training set of sentence-length text pairs, and times with fishdip's own Trainer:
  - one mask refresh, split into ranking all samples by loss, per-sample Fisher scores on the
    most regressing ones, and the global top-k;
  - optimizer steps of `full` (dense AdamW) and `fish-dip` (SparseAdamW on 1 %).
Prints a table and writes JSON (default benchmarks/results/refresh-<shape>-<device>.json).

Run:  python benchmarks/refresh.py --shape smollm2 [--device cuda] [--samples 48]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from fishdip.io import write_json_atomic
from fishdip.models.loading import prepare
from fishdip.training.config import TrainConfig
from fishdip.training.trainer import Trainer

SHAPES = {
    # SmolLM2-135M (the embedded model) and T5-large (the FISH-DIP paper's model)
    "smollm2": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=2048)),
    "t5-large": lambda: T5ForConditionalGeneration(T5Config(
        vocab_size=32128, d_model=1024, d_ff=4096, d_kv=64, num_layers=24, num_heads=16)),
    "tiny": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048)),
}


def synthetic_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Sentence-length pairs (~25 words) shaped like TANL joint-ER examples."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(500)]
    pairs = []
    for _ in range(n):
        sentence = [rng.choice(words) for _ in range(25)]
        target = list(sentence)
        target[3:5] = ["[", *sentence[3:5], "| person | live in =", sentence[10], "]"]
        pairs.append((" ".join(sentence), " ".join(target)))
    return pairs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model_fn, tokenizer, pairs, method: str, device, steps: int) -> float:
    torch.manual_seed(0)
    loaded = prepare(model_fn().to(device), tokenizer, "bench")
    cfg = TrainConfig(method=method, epochs=1, batch_size=8, density=0.01, max_length=256,
                      refresh_steps=10**9, regressing_samples=3, recipe="default")  # AdamW, as published
    trainer = Trainer(loaded, pairs[: 8 * (steps + 1)], cfg, progress=False)
    result = trainer.train()
    sync(device)
    # drop the first step (allocations, warm-up); per-step times are not recorded, so use the mean
    mask_s = sum(r["seconds"] for r in result.refreshes)
    return (result.seconds - mask_s) / result.steps, result.optimizer_state_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=48, help="training set size ranked at each refresh")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps timed per method")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    output = args.output or Path(__file__).parent / "results" / f"refresh-{args.shape}-{device.type}.json"

    tokenizer = ByT5Tokenizer()  # byte-level: no vocabulary file, so no download
    pairs = synthetic_pairs(max(args.samples, 8 * (args.steps + 1)))
    torch.manual_seed(0)
    loaded = prepare(SHAPES[args.shape]().to(device), tokenizer, args.shape)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    cfg = TrainConfig(method="fish-dip", batch_size=8, density=0.01, regressing_samples=3, max_length=256,
                      recipe="default")  # ranking by mean loss in eval mode, as published
    trainer = Trainer(loaded, pairs[: args.samples], cfg, progress=False)
    refreshes = []
    for step in range(2):  # the first includes one-off allocations
        sync(device)
        trainer.compute_mask(step)
        sync(device)
        refreshes.append(trainer.result.refreshes[-1])
    refresh = refreshes[-1]
    del trainer, loaded
    if device.type == "cuda":
        torch.cuda.empty_cache()

    rows = []
    for method in ("full", "fish-dip"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step_s, state = time_steps(SHAPES[args.shape], tokenizer, pairs, method, device, args.steps)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        rows.append({"method": method, "step_s": step_s, "optimizer_state_MiB": state / 2**20, "peak_GiB": peak})
        if device.type == "cuda":
            torch.cuda.empty_cache()

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{args.shape}: {n_params:,} parameters, k = 1 % = {round(n_params * 0.01):,}; device {name}")
    print(f"mask refresh over {args.samples} samples, Fisher on 3: ranking {refresh['ranking_seconds']:.2f} s, "
          f"Fisher {refresh['fisher_seconds']:.2f} s, top-k {refresh['top_k_seconds']:.2f} s, "
          f"total {refresh['seconds']:.2f} s")
    print("\n| method | s / optimizer step (batch 8) | optimizer state MiB | peak GPU GiB |")
    print("|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_GiB']:.2f}" if r["peak_GiB"] is not None else "-"
        print(f"| {r['method']} | {r['step_s']:.3f} | {r['optimizer_state_MiB']:.1f} | {peak} |")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, {"shape": args.shape, "device": name, "parameters": n_params,
                                  "samples": args.samples, "refresh": refresh, "steps": rows})
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
