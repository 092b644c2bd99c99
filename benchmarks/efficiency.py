"""Benchmark: what sparse fine-tuning costs end to end, against full fine-tuning and LoRA.

For each model x precision x method, in a fresh process (so peak memory is its own), with
fishdip's own Trainer on 48 training pairs, batch 8:
  - median optimizer-step time, and the same with the fish-dip refresh amortized at the default
    schedule (one refresh per 100 steps); its ratio to `full` at the same precision;
  - refresh time (ranking every sample, Fisher scores on the most regressing, top-k) and its share;
  - peak memory while training (resident set on CPU, allocated on CUDA) and its rise over the
    loaded model; optimizer state bytes and their ratio to dense AdamW (8 bytes per entry);
  - checkpoint bytes (full model folder, fish-dip delta, LoRA adapter) and their ratio to the full model;
  - tokens/s (the samples' own tokens, padding not counted) and the share of this machine's measured matrix-product rate
    reached (6 x parameters x tokens per step);
  - the share of a step's time spent in matrix products (torch.profiler on one step): what is not
    matrix work (elementwise ops, optimizer update, gradient gathering, Python);
  - generation: new tokens/s of batched greedy generation (evaluation's path: length-sorted batches
    of 64, KV cache, finished rows leaving the batch) for the embedded model on 48 CoNLL04 dev sentences;
    benchmarks/generation.py compares that path with model.generate on a trained model's row lengths.
Models: the embedded SmolLM2-135M (CoNLL04 sentences when the data is found, else synthetic ones)
and a randomly initialised model of t5-base's shape (byte-level tokenizer, so no download);
``smollm2-shape`` is the embedded model's architecture with random weights and the byte tokenizer,
for a machine the GGUF cannot reach (a sentence is about 3x the tokens, so its times are not the
embedded model's; compare its rows with each other). With
``--memory-shape embedded,t5-large`` it also measures fish-dip with and without gathered gradients.

Prints a table and writes JSON (default benchmarks/results/efficiency-<device>.json).

Run:  python benchmarks/efficiency.py [--models embedded,t5-base] [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
METHODS = ("full", "fish-dip", "lora")
REFRESH_EVERY = 100  # the default schedule (--refresh-steps)
# training pairs per shape (batch 8): 6 optimizer steps on the embedded model; the slower T5 shapes
# take 3 (t5-base) and 2 (t5-large, memory only) so the benchmark fits an hour on a 2-core CPU
PAIRS = {"embedded": 48, "smollm2-shape": 48, "t5-base": 24, "t5-large": 16}
# byte-level shapes read at most this many source bytes (targets 1.5x): a sentence of 20-40 words;
# t5-large's full fine-tuning must fit this 24 GiB machine
SOURCE_BYTES = {"t5-base": 200, "t5-large": 100, "t5-tiny": 200, "smollm2-shape": 200}


# ---- one measurement, in its own process ------------------------------------------------------
def _wide_bytes():
    from transformers import ByT5Tokenizer

    class WideBytes(ByT5Tokenizer):
        """Bytes for a model whose vocabulary is wider than 256 bytes: a random model generates any
        id, and an id past the bytes decodes as the byte it wraps to."""

        def _convert_id_to_token(self, index):
            return chr((index - self.offset) % 256)

    return WideBytes()


def build_model(shape: str):
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    from fishdip.models.loading import load_model, prepare

    if shape == "embedded":
        return load_model("embedded")
    torch.manual_seed(0)
    if shape == "smollm2-shape":  # the embedded model's shapes with random weights: no GGUF needed
        tok = _wide_bytes()
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                             num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                             tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, bos_token_id=None)
        return prepare(LlamaForCausalLM(config), tok, shape)
    tok = ByT5Tokenizer()  # byte-level: no vocabulary file; ids fit in any vocabulary
    sizes = {"t5-base": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
             "t5-large": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16),
             "t5-tiny": dict(d_model=32, d_ff=64, num_layers=2, num_heads=4)}[shape]
    config = T5Config(vocab_size=32128, d_kv=64, decoder_start_token_id=tok.pad_token_id,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **sizes)
    return prepare(T5ForConditionalGeneration(config), tok, shape)


def training_pairs(n: int, byte_level: int = 0) -> list[tuple[str, str]]:
    from fishdip.tasks import load_task
    from fishdip.tasks.options import DataOptions

    data_dir = os.environ.get("FISHDIP_DATA_DIR") or str(HERE.parent.parent / "shared" / "data")
    try:
        task = load_task("conll04", data_dir, "fishdip")
        train, _, _ = task.episode_data(1, DataOptions(data_dir=data_dir, train_size=n))
        pairs = task.pairs(train)
    except Exception:  # no data here: synthetic sentence-length pairs
        sys.path.insert(0, str(HERE))
        from refresh import synthetic_pairs

        pairs = synthetic_pairs(n)
    if byte_level:  # bytes are ~4x as many as subwords: keep the sequences sentence-sized
        pairs = [(s[:byte_level], t[: byte_level * 3 // 2]) for s, t in pairs]
    return pairs


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and they count as resident)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: resident sets then include freed pages
        pass


class PeakMemory:
    """Peak memory per phase ("train" or "refresh"): this process's resident set sampled every 5 ms,
    or on CUDA the allocator's peak."""

    def __init__(self, device: torch.device):
        self.device, self.phase, self.peaks, self._stop = device, "train", {}, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def now(self) -> int:
        return torch.cuda.memory_allocated() if self.device.type == "cuda" else self.rss()

    def _record(self, value: int) -> None:
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), value)

    def switch(self, phase: str) -> None:
        if self.device.type == "cuda":
            self._record(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        else:
            self._record(self.rss())
            release_free_memory()  # else the next phase's resident set still holds this one's freed pages
        self.phase = phase

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.005):
            self._record(self.rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._record(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and "tokenizer" not in f.name
               and f.suffix in (".safetensors", ".bin"))


def measure(spec: dict) -> dict:
    from fishdip.models.loading import save_delta_model, save_model
    from fishdip.training.config import TrainConfig
    from fishdip.training.trainer import Trainer

    device = torch.device(spec["device"])
    loaded = build_model(spec["model"])
    total_params = sum(p.numel() for p in loaded.model.parameters())
    method = spec["method"]
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        kind = TaskType.SEQ_2_SEQ_LM if loaded.is_encoder_decoder else TaskType.CAUSAL_LM
        loaded.model = get_peft_model(loaded.model, LoraConfig(task_type=kind, r=8, lora_alpha=16))
    loaded.model.to(device)
    pairs = training_pairs(PAIRS.get(spec["model"], 48), byte_level=SOURCE_BYTES.get(spec["model"], 0))
    cfg = TrainConfig(method="full" if method == "lora" else method, epochs=1, batch_size=8,
                      precision=spec["precision"], refresh_steps=REFRESH_EVERY, max_length=256,
                      lr=1e-4 if method == "full" else 1e-3,
                      recipe="default")  # AdamW for every method, as the published tables measured
    trainer = Trainer(loaded, pairs, cfg, progress=False, gather_grads=spec.get("gather", True))
    import gc

    gc.collect()
    release_free_memory()
    memory = PeakMemory(device)
    before = memory.now()
    compute_mask = trainer.compute_mask

    def timed_refresh(step: int):  # the refresh's memory is counted apart from the training steps'
        memory.switch("refresh")
        try:
            return compute_mask(step)
        finally:
            memory.switch("train")

    trainer.compute_mask = timed_refresh
    matrix = profile_one_step(trainer, step_index=3)
    with memory:
        result = trainer.train()
    steps = [r["seconds"] for r in result.losses[1:]]  # the first step warms up kernels and caches
    step = statistics.median(steps)
    refresh = result.refreshes[0]["seconds"] if result.refreshes else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        if method == "fish-dip":
            save_delta_model(loaded, trainer.touched, out, {"base_model": "embedded"}, "")
        elif method == "lora":
            loaded.model.save_pretrained(out)
        else:
            save_model(loaded, out)
        checkpoint = folder_bytes(out)
    tokens_per_step = result.train_tokens / max(1, result.steps)
    return {**spec, "params": total_params, "trainable": result.trainable_params if method != "lora" else
            sum(p.numel() for p in loaded.model.parameters() if p.requires_grad),
            "step_seconds": step, "steps_timed": len(steps),
            "step_seconds_amortized": step + refresh / REFRESH_EVERY, "refresh_seconds": refresh,
            "refresh_detail": result.refreshes[0] if result.refreshes else None,
            "peak_bytes": memory.peaks.get("train", 0), "refresh_peak_bytes": memory.peaks.get("refresh", 0),
            "loaded_bytes": before, "optimizer_state_bytes": result.optimizer_state_bytes,
            "checkpoint_bytes": checkpoint, "tokens_per_second": tokens_per_step / step,
            "matrix_share": matrix["share"], "profiled_step_seconds": matrix["seconds"],
            "tflops": 6 * total_params * tokens_per_step / step / 1e12, "precision_used": result.precision}


MATRIX_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_one_step(trainer, step_index: int) -> dict:
    """Profile the ``step_index``-th optimizer step (1-based) of ``trainer.train()``; the returned dict
    is filled in when it has run: the share of the step's CPU time spent in matrix products."""
    from torch.profiler import ProfilerActivity, profile

    step, seen, found = trainer._step, [0], {"share": float("nan"), "seconds": float("nan")}

    def profiled(*args, **kwargs):
        seen[0] += 1
        if seen[0] != step_index:
            return step(*args, **kwargs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = step(*args, **kwargs)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        found["share"] = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_OPS) / max(total, 1)
        found["seconds"] = trainer._step_seconds
        return out

    trainer._step = profiled
    return found


def measure_generation(spec: dict) -> dict:
    """New tokens/s of batched greedy generation, as evaluation runs it (length-sorted batches)."""
    from fishdip.data.datasets import load_split
    from fishdip.evaluation.predict import generate_sorted
    from fishdip.models.loading import GenerationBudget
    from fishdip.tasks import load_task

    loaded = build_model(spec["model"])
    data_dir = os.environ.get("FISHDIP_DATA_DIR") or str(HERE.parent.parent / "shared" / "data")
    task = load_task("conll04", data_dir)
    examples, _ = load_split("conll04", "dev", data_dir)
    cut = SOURCE_BYTES.get(spec["model"])  # byte-level shapes: sentence-sized sequences, as in training
    sources = [task.source(ex)[:cut] for ex in examples[: spec["sentences"]]]
    # the base model rarely stops by itself: a fixed budget (source length + 16 tokens) per sentence
    loaded.budget = GenerationBudget(0, 1.0, 16)
    generate_sorted(loaded, sources[: spec["batch_size"]], spec["batch_size"], 256, 1, progress=False)  # warm-up
    started = time.perf_counter()
    out = generate_sorted(loaded, sources, spec["batch_size"], 256, 1, progress=False)
    seconds = time.perf_counter() - started
    tok = loaded.tokenizer
    new_tokens = sum(len(tok(" " + text, add_special_tokens=False)["input_ids"]) for text in out.texts)
    return {**spec, "seconds": seconds, "new_tokens": new_tokens, "tokens_per_second": new_tokens / seconds,
            "sentences_per_second": len(sources) / seconds}


# ---- the driver -------------------------------------------------------------------------------
def matmul_rate(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e12


def run_worker(spec: dict) -> dict | None:
    """One measurement in a fresh process; None (with the reason on stderr) if it failed, e.g. ran
    out of memory, so that the other rows are still measured and written."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode:
        reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else proc.stderr[-2000:]
        print(f"{spec}: failed, exit {proc.returncode}: {reason}", file=sys.stderr, flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], peaks: dict) -> str:
    lines = ["| model | precision | method | step s | step s, refresh amortized | x full | refresh s | "
             "refresh share | train peak GiB | rise GiB | refresh peak GiB | optimizer MB | x AdamW | "
             "checkpoint MB | x full model | tokens/s | TFLOP/s | of peak | matrix share of step |", "|" + "---|" * 19]
    for r in rows:
        full = next((x for x in rows if x["model"] == r["model"] and x["precision"] == r["precision"]
                     and x["method"] == "full" and x.get("gather", True)), None)
        if full is None:  # no full fine-tuning row to compare with (it failed): ratios are left out
            full = {"step_seconds_amortized": float("nan"), "checkpoint_bytes": float("nan")}
        name = r["method"] + ("" if r.get("gather", True) else " (dense grads)")
        peak = peaks.get("bf16" if r["precision_used"] == "bf16" else "fp32", float("nan"))
        share = (r["refresh_seconds"] / REFRESH_EVERY) / r["step_seconds_amortized"]
        lines.append(
            f"| {r['model']} | {r['precision_used']} | {name} | {r['step_seconds']:.2f} | "
            f"{r['step_seconds_amortized']:.2f} | {r['step_seconds_amortized'] / full['step_seconds_amortized']:.2f} | "
            f"{r['refresh_seconds']:.1f} | {share:.1%} | {r['peak_bytes'] / 2**30:.2f} | "
            f"{(r['peak_bytes'] - r['loaded_bytes']) / 2**30:.2f} | {r['refresh_peak_bytes'] / 2**30:.2f} | "
            f"{r['optimizer_state_bytes'] / 1e6:.1f} | "
            f"{r['optimizer_state_bytes'] / (8 * r['params']):.1%} | {r['checkpoint_bytes'] / 1e6:.1f} | "
            f"{r['checkpoint_bytes'] / full['checkpoint_bytes']:.1%} | {r['tokens_per_second']:.0f} | "
            f"{r['tflops']:.3f} | {r['tflops'] / peak:.0%} | {r.get('matrix_share', float('nan')):.0%} |")
    return "\n".join(lines)


def generation_table(rows: list[dict]) -> str:
    lines = ["| model | sentences | batch | seconds | new tokens | tokens/s | sentences/s |", "|" + "---|" * 7]
    lines += [f"| {r['model']} | {r['sentences']} | {r['batch_size']} | {r['seconds']:.1f} | {r['new_tokens']} | "
              f"{r['tokens_per_second']:.1f} | {r['sentences_per_second']:.2f} |" for r in rows]
    return "\n".join(lines)


def machine_name(device: torch.device) -> str:
    """The processor (or GPU) the numbers belong to."""
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedded,t5-base")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--memory-shape", default=None, help="also fish-dip with/without gathered gradients "
                        "and full, at fp32, on these shapes (e.g. embedded,t5-large)")
    parser.add_argument("--generation", default="embedded", help="models whose generation speed is measured "
                        "(comma list; empty: none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure_generation(spec) if spec.get("kind") == "generation" else measure(spec)))
        return
    device = torch.device(args.device)
    # the peak of each precision measured (bf16 without native support is slow to measure and unused)
    peaks = {p: matmul_rate({"fp32": torch.float32, "bf16": torch.bfloat16}[p], device)
             for p in args.precisions.split(",")}
    specs = [{"model": m, "precision": p, "method": method, "device": args.device}
             for m in args.models.split(",") for p in args.precisions.split(",") for method in args.methods.split(",")]
    for shape in args.memory_shape.split(",") if args.memory_shape else []:
        done = {(x["model"], x["precision"], x["method"]) for x in specs}
        specs += [{"model": shape, "precision": "fp32", "method": method, "device": args.device, "gather": gather}
                  for method, gather in (("full", True), ("fish-dip", True), ("fish-dip", False))
                  if gather is False or (shape, "fp32", method) not in done]
    specs += [{"kind": "generation", "model": m, "device": args.device, "sentences": 48, "batch_size": 64}
              for m in args.generation.split(",") if m]
    cpu = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else torch.cuda.get_device_name()
    out = args.output or HERE / "results" / f"efficiency-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for i, spec in enumerate(specs, 1):
        print(f"[{i}/{len(specs)}] {spec}", file=sys.stderr, flush=True)
        row = run_worker(spec)
        rows.append(row) if row else failed.append(spec)
        text = table([r for r in rows if r.get("kind") != "generation"], peaks)
        generation = [r for r in rows if r.get("kind") == "generation"]
        tmp = out.with_suffix(".tmp")  # rewritten after every row: a late failure loses nothing
        tmp.write_text(json.dumps({"device": args.device, "machine": machine_name(device), "capability": cpu,
                                   "threads": torch.get_num_threads(),
                                   "torch": torch.__version__, "command": " ".join(sys.argv),
                                   "matmul_tflops": peaks, "rows": rows, "failed": failed, "table": text,
                                   "generation_table": generation_table(generation)},
                                  indent=2) + "\n")
        tmp.replace(out)
    print(f"device: {args.device} ({machine_name(device)}, {cpu}, {torch.get_num_threads()} threads); matrix-product "
          f"peak measured here: " + ", ".join(f"{p} {v:.3f}" for p, v in peaks.items()) + " TFLOP/s")
    print(text)
    print(generation_table(generation))
    for spec in failed:
        print(f"failed: {spec}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
