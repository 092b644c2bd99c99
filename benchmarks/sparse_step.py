"""Benchmark: optimizer memory, optimizer step time and mask-refresh time, sparse vs dense.

Compares on the embedded model's architecture (SmolLM2-135M, random weights, so no
download is needed):
  dense AdamW         - full fine-tuning
  masked dense AdamW  - what masking the gradients of a dense AdamW does: state for every
                        entry, and frozen entries drift through momentum and weight decay.
                        (The FISH-DIP reference masks a dense Adafactor without momentum
                        or weight decay, where masked entries do not move; its cost is
                        the dense optimizer state.)
  SparseAdamW         - fishdip: state for the k trainable entries only

Prints a table and writes JSON (default benchmarks/results/sparse_step.json).
Run:  python benchmarks/sparse_step.py [--density 0.01] [--steps 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from fishdip.io import write_json_atomic
from fishdip.sparse.masks import num_to_keep, top_k_mask
from fishdip.sparse.optimizers import SparseAdamW

# SmolLM2-135M's shape (from its config), so the benchmark needs no weights
SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))


def fake_grads(params, gen):
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=gen).to(p.device)


def time_steps(opt, params, steps, before_step=None) -> float:
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        fake_grads(params, gen)
        start = time.perf_counter()
        if before_step:
            before_step()
        opt.step()
        if next(iter(params.values())).is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]  # median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "sparse_step.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2)).to(device)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    k = num_to_keep(total, args.density)

    start = time.perf_counter()
    scores = {n: torch.rand(p.shape, device=device) for n, p in params.items()}
    mask = top_k_mask(scores, k)
    topk_s = time.perf_counter() - start
    dense_masks = {n: mask.dense(n, p) for n, p in params.items()}

    rows = []
    opt = torch.optim.AdamW(params.values(), lr=1e-4, weight_decay=0.01)
    t = time_steps(opt, params, args.steps)
    rows.append({"optimizer": "dense AdamW (full)", "state_MiB": state_bytes(opt) / 2**20, "step_s": t})
    del opt

    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-4, weight_decay=0.01)

    def zero_outside():
        for n, p in params.items():
            p.grad.mul_(dense_masks[n])

    t = time_steps(opt, params, args.steps, zero_outside)
    moved = sum(int(((p.detach() != before[n]) & ~dense_masks[n]).sum()) for n, p in params.items())
    rows.append({"optimizer": "masked dense AdamW (reference)", "state_MiB": state_bytes(opt) / 2**20,
                 "step_s": t, "frozen_entries_moved": moved})
    del opt

    before = {n: p.detach().clone() for n, p in params.items()}
    opt = SparseAdamW(params, lr=1e-4, weight_decay=0.01)
    opt.set_mask(mask)
    t = time_steps(opt, params, args.steps)
    moved = sum(int(((p.detach() != before[n]) & ~dense_masks[n]).sum()) for n, p in params.items())
    rows.append({"optimizer": f"SparseAdamW ({args.density:.0%})", "state_MiB": opt.num_state_bytes() / 2**20,
                 "step_s": t, "frozen_entries_moved": moved})

    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print(f"model: SmolLM2-135M shape, {total:,} parameters; mask keeps k={k:,}; "
          f"global top-k over all entries took {topk_s:.2f} s; median of {args.steps} steps\n")
    print(f"| {'optimizer':34} | state MiB | step s | frozen entries moved |")
    print(f"|{'-' * 36}|-----------|--------|----------------------|")
    for r in rows:
        moved = r.get("frozen_entries_moved", "n/a")
        print(f"| {r['optimizer']:34} | {r['state_MiB']:9.1f} | {r['step_s']:6.3f} | {moved!s:>20} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, {"device": str(device), "parameters": total, "k": k, "density": args.density,
                                       "topk_seconds": topk_s, "rows": rows})
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
