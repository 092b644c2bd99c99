"""Benchmark: evaluation's batched greedy generation, ``model.generate`` against ``greedy_rows``.

``model.generate`` runs every row of a batch until the last one stops; ``greedy_rows`` (fishdip's
greedy path) lets a row that is done leave the batch. How much that saves depends on
where a trained model stops each sentence, and the embedded base model rarely stops by itself. So
each sentence gets as its token budget the length a trained model wrote for it: the generated
texts of a committed predictions.jsonl (default: the paper protocol's fish-dip episode 1 on the
CoNLL04 test split), plus one token for the EOS. Both paths then run the rows as evaluation ran
them, the same prompts, length-sorted batches and row lengths, and their tokens are compared.

``--model t5-base`` runs the same comparison on a randomly initialised model of t5-base's shape
(byte-level tokenizer, so no download; sources cut at 200 bytes as in benchmarks/efficiency.py):
an encoder-decoder, whose rows leave the batch with their encoder states too. A byte model would
write about 4x the subword tokens, so there a row's budget is its generated text's bytes / 4.

Prints a table and writes JSON (default benchmarks/results/generation-<device>.json).

``--trained MODEL`` measures copy-ahead (models/copy_ahead.py) on a trained model's own outputs,
CoNLL04 test sentences run to their own end: one token a step (``greedy_rows``) against checking
guesses of 4 or 8 tokens at once (``--widths``), with every decoding; every row must come out the
same. It counts the forward passes too: on a device where a pass of a few tokens costs what a pass
of one does (a GPU at small batches), the ratio of passes is the speed-up to expect.

``--replay DECODINGS.json ...`` counts copy-ahead's forward passes without running a model: the
greedy outputs that benchmarks/decodings.py stored (every decoding of every model in the files) are
written again as generate_sorted writes them (length-sorted batches in step, a batch's passes its
slowest row's), each pass keeping the guess's prefix that the stored output agrees with, as
greedy search would. Guesses from ``Drafts`` against the older guess (the prompt's tokens after the
row's last ones, ``lookup``). A pass count here equals the model's (checked against ``--trained``).

Run:  python benchmarks/generation.py [--sentences 96] [--batch-sizes 16,32,64] [--model t5-base]
      python benchmarks/generation.py --trained runs/main/fish-dip --sentences 96 --batch-sizes 64 [--device cuda]
      python benchmarks/generation.py --replay docs/results/decodings/conll04-epoch100-test.json --batch-sizes 1,64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from efficiency import SOURCE_BYTES, build_model, machine_name  # this folder is the script's path

from fishdip.io import write_json_atomic

HERE = Path(__file__).resolve().parent
PREDICTIONS = (HERE.parent / "docs/results/conll04-paper/conll04/fraction-0.01/fish-dip/episode-1"
               / "predictions.jsonl")


def replay(loaded, path: Path, n: int) -> tuple[list[list[int]], list[int]]:
    """The first ``n`` sentences' prompts (a decoder-only model's) or sources (an encoder-decoder's)
    and, as budgets, the token lengths the trained model wrote."""
    from fishdip.models.encoding import prompt_ids

    tok = loaded.tokenizer
    records = [json.loads(line) for line in path.read_text().splitlines()[:n]]
    if loaded.is_encoder_decoder:  # the byte-level T5 shape (see the docstring)
        prompts = [tok(r["input"][: SOURCE_BYTES["t5-base"]])["input_ids"] for r in records]
        return prompts, [len(r["generated"].encode()) // 4 + 1 for r in records]
    prompts = [prompt_ids(loaded, r["input"], 256) for r in records]
    limits = [len(tok(" " + r["generated"], add_special_tokens=False)["input_ids"]) + 1 for r in records]
    return prompts, limits


def padded(loaded, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """As evaluation pads them: prompts on the left (decoder-only), sources on the right."""
    side = "right" if loaded.is_encoder_decoder else "left"
    enc = loaded.tokenizer.pad({"input_ids": prompts}, padding=True, padding_side=side, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def run(loaded, prompts, limits, batch_size: int, path: str) -> tuple[float, list[list[int]]]:
    """Seconds and rows (cut at EOS or budget) for every sentence, in length-sorted batches."""
    from fishdip.models.generation import greedy_rows

    tok, model = loaded.tokenizer, loaded.model
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    rows: list[list[int]] = [[] for _ in prompts]
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        input_ids, mask = padded(loaded, [prompts[i] for i in ids])
        budget = [limits[i] for i in ids]
        if path == "greedy_rows":
            out = greedy_rows(model, input_ids, mask, budget, tok.eos_token_id)
        else:
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max(budget),
                                 do_sample=False, num_beams=1, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
            # new tokens: after the prompt (decoder-only) or the decoder's start token
            out = out[:, 1 if loaded.is_encoder_decoder else input_ids.shape[1]:].tolist()
        for i, row, limit in zip(ids, out, budget):
            row = row[:limit]
            rows[i] = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
    return time.perf_counter() - started, rows


def trained(path: str, sentences: int, batch_size: int, widths: list[int], output: Path | None,
            device: str = "cpu") -> None:
    """``--trained``: a trained model on CoNLL04 test sentences, each row to its own end (EOS, or the
    model's budget: free; the grammar's: constrained), one token a step (greedy_rows) against
    copy-ahead; the rows must be the same."""
    import fishdip
    from fishdip.evaluation.predict import generate_sorted
    from fishdip.formats.grammar import decoding_rules
    from fishdip.tasks.options import DECODINGS

    predictor = fishdip.load(path, device=device)
    loaded, task = predictor.loaded, predictor.task
    from fishdip.data.datasets import load_split

    examples = load_split("conll04", "test")[0][:sentences]
    sources = [task.source(ex) for ex in examples]
    grammars = [task.grammar(ex, loaded.budget) for ex in examples]
    generate_sorted(loaded, sources[:4], 4, 256, 1, progress=False)  # warm-up
    loaded.grammar_tokenizer(), loaded.opening_tokens()  # built once (seconds), not inside a timed run
    passes = count_passes(loaded.model)
    results = []
    for decoding in DECODINGS:
        reference = None
        for width in [0, *widths]:
            started, passes[0] = time.perf_counter(), 0
            out = generate_sorted(loaded, sources, batch_size, 256, 1, progress=False,
                                  grammars=grammars if decoding != "free" else None, copy_ahead=width,
                                  rules=decoding_rules(decoding))
            seconds = time.perf_counter() - started
            reference = reference or out.texts
            tokens = sum(len(loaded.tokenizer(" " + t, add_special_tokens=False)["input_ids"]) + 1 for t in out.texts)
            results.append({"decoding": decoding, "path": f"copy-ahead {width}" if width else "greedy_rows",
                            "batch_size": batch_size, "seconds": round(seconds, 1), "new_tokens": tokens,
                            "tokens_per_second": round(tokens / seconds, 1), "forward_passes": passes[0],
                            "rows_identical": sum(a == b for a, b in zip(out.texts, reference))})
            print(json.dumps(results[-1]), flush=True)
    lines = [f"| decoding | path | s | new tokens | tokens/s | x greedy_rows | passes | fewer passes "
             f"| rows identical (of {len(sources)}) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        base = next(x for x in results if x["decoding"] == r["decoding"] and x["path"] == "greedy_rows")
        lines.append(f"| {r['decoding']} | {r['path']} | {r['seconds']} | {r['new_tokens']} | {r['tokens_per_second']}"
                     f" | {r['tokens_per_second'] / base['tokens_per_second']:.2f} | {r['forward_passes']}"
                     f" | {base['forward_passes'] / r['forward_passes']:.2f}x | {r['rows_identical']} |")
    table = "\n".join(lines)
    print(table)
    machine = {"name": machine_name(torch.device(device)), "capability": torch.backends.cpu.get_cpu_capability(),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    out = output or HERE / "results" / f"generation-trained-{torch.device(device).type}.json"
    write_json_atomic(out, {"machine": machine, "model": path, "sentences": len(sources), "results": results,
                               "table": table})


def replay_passes(loaded, sources: list[str], outputs: list[list[int]], batch_size: int, width: int,
                  guess: str) -> int:
    """Forward passes that copy-ahead of ``width`` (``guess``: drafts or lookup; 0: one token a pass)
    needs to write ``outputs`` (token ids, EOS included) in generate_sorted's batches."""
    from fishdip.models.copy_ahead import lookup
    from fishdip.models.encoding import prompt_ids
    from fishdip.models.generation import _drafts

    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    total = 0
    for start in range(0, len(order), batch_size):
        ids = order[start:start + batch_size]
        prompts = [prompt_ids(loaded, sources[i], 256) for i in ids]
        rows = [outputs[i] for i in ids]
        drafts = _drafts(loaded, prompts, [sources[i] for i in ids])
        done = [1] * len(rows)  # the prompt's pass writes each row's first token
        for slot, row in enumerate(rows):
            drafts.observe(slot, row[:1])
        live, total = [s for s in range(len(rows)) if len(rows[s]) > 1], total + 1
        while live:
            total += 1
            for s in live:
                ahead = 0
                if width:
                    g = drafts.guess(s, width) if guess == "drafts" else lookup(prompts[s], rows[s][:done[s]], width)
                    while ahead < len(g) and done[s] + ahead < len(rows[s]) and g[ahead] == rows[s][done[s] + ahead]:
                        ahead += 1
                drafts.observe(s, rows[s][done[s]:done[s] + ahead + 1])
                done[s] += ahead + 1
            live = [s for s in live if done[s] < len(rows[s])]
    return total


def replay_decodings(paths: list[Path], batch_sizes: list[int], widths: list[int], data_dir: str | None,
           output: Path | None) -> None:
    """``--replay``: copy-ahead's passes on stored outputs, per decoding and batch size."""
    from fishdip.data.datasets import load_split
    from fishdip.models.loading import load_model
    from fishdip.tasks import load_task

    loaded, task = load_model("embedded"), load_task("conll04", data_dir)
    tok = loaded.tokenizer
    by_id = {split: {ex.id: ex for ex in load_split("conll04", split, data_dir)[0]} for split in ("dev", "test")}
    results, lines = [], ["| decoding | batch | one token a pass | " + " | ".join(
        f"{g} {w}" for g in ("lookup", "drafts") for w in widths) + " |", "|---" * (3 + 2 * len(widths)) + "|"]
    runs = [r for p in paths for r in json.loads(p.read_text())["runs"]]
    for decoding in ("free", "constrained", "own-brackets"):
        models = [(r, [by_id[r["split"]][row["id"]] for row in r["rows"]]) for r in runs if decoding in r["rows"][0]]
        if not models:
            continue
        for batch_size in batch_sizes:
            counts = {}
            for guess, width in [("lookup", 0)] + [(g, w) for g in ("lookup", "drafts") for w in widths]:
                counts[f"{guess} {width}" if width else "one token a pass"] = sum(
                    replay_passes(loaded, [task.source(ex) for ex in exs],
                                  [tok(" " + row[decoding], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                                   for row in r["rows"]], batch_size, width, guess) for r, exs in models)
            base = counts["one token a pass"]
            results.append({"decoding": decoding, "batch_size": batch_size, "models": len(models),
                            "sentences": sum(len(exs) for _, exs in models), "passes": counts})
            lines.append(f"| {decoding} | {batch_size} | {base} | " + " | ".join(
                f"{n} ({base / n:.2f}x)" for k, n in counts.items() if k != "one token a pass") + " |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    shown = [str(p.resolve().relative_to(HERE.parent)) if p.resolve().is_relative_to(HERE.parent) else str(p)
             for p in paths]
    write_json_atomic(output or HERE / "results" / "generation-replay.json",
                      {"decodings": shown, "results": results, "table": table})


def count_passes(model) -> list[int]:
    """Count the model's forward passes from now on (in the returned list's one entry): where a
    pass of a few tokens costs what a pass of one does (a GPU at small batches), copy-ahead's
    speed-up is the ratio of passes."""
    passes, forward = [0], model.forward

    def counted(*args, **kwargs):
        passes[0] += 1
        return forward(*args, **kwargs)

    model.forward = counted
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, default=PREDICTIONS,
                        help="a predictions.jsonl whose generated texts give each sentence's length")
    parser.add_argument("--sentences", type=int, default=96, help="the first N sentences of that file")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--model", default="embedded", choices=("embedded", "t5-base"),
                        help="the embedded model, or a random-weight model of t5-base's shape")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--trained", default=None, help="a trained model (folder or run folder): free and constrained "
                        "greedy search against copy-ahead on its own outputs")
    parser.add_argument("--widths", default="4,8", help="--trained: copy-ahead widths (tokens checked at once)")
    parser.add_argument("--device", default="cpu", help="--trained: where the model runs (cpu, cuda)")
    parser.add_argument("--replay", type=Path, nargs="+", default=None,
                        help="benchmarks/decodings.py files: copy-ahead's forward passes on their stored outputs")
    parser.add_argument("--data-dir", default=None, help="--replay: the folder holding conll04/")
    args = parser.parse_args()
    if args.replay:
        replay_decodings(args.replay, [int(b) for b in args.batch_sizes.split(",")],
                         [int(w) for w in args.widths.split(",")], args.data_dir, args.output)
        return
    if args.trained:
        trained(args.trained, args.sentences, int(args.batch_sizes.split(",")[-1]),
                [int(w) for w in args.widths.split(",")], args.output, args.device)
        return

    loaded = build_model(args.model)
    loaded.model.eval()
    prompts, limits = replay(loaded, args.predictions, args.sentences)
    run(loaded, prompts[:8], [min(8, x) for x in limits[:8]], 8, "generate")  # warm-up
    results, reference = [], None
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        for path in ("generate", "greedy_rows"):
            seconds, rows = run(loaded, prompts, limits, batch_size, path)
            reference = reference or rows  # model.generate at the first batch size
            tokens = sum(len(r) for r in rows)
            results.append({"path": path, "batch_size": batch_size, "seconds": seconds, "new_tokens": tokens,
                            "tokens_per_second": tokens / seconds,
                            "rows_identical_to_first": sum(a == b for a, b in zip(rows, reference))})
            print(json.dumps(results[-1]), flush=True)
    base = next(r for r in results if r["path"] == "generate" and r["batch_size"] == results[0]["batch_size"])
    lines = [f"| path | batch | s | new tokens | tokens/s | x generate at batch {base['batch_size']} "
             f"| rows identical (of {len(prompts)}) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['path']} | {r['batch_size']} | {r['seconds']:.1f} | {r['new_tokens']} | "
                     f"{r['tokens_per_second']:.1f} | {r['tokens_per_second'] / base['tokens_per_second']:.2f} | "
                     f"{r['rows_identical_to_first']} |")
    table = "\n".join(lines)
    print(table)
    machine = {"name": machine_name(torch.device("cpu")), "capability": torch.backends.cpu.get_cpu_capability(),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    suffix = "" if args.model == "embedded" else f"-{args.model}"
    out = args.output or HERE / "results" / f"generation{suffix}-cpu.json"
    source = args.predictions.resolve()
    shown = str(source.relative_to(HERE.parent)) if source.is_relative_to(HERE.parent) else str(source)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": machine, "model": args.model, "predictions": shown, "sentences": len(prompts),
                               "results": results, "table": table}, indent=2) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
