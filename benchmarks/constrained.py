"""Benchmark: what constrained decoding costs.

1. The grammar engines, on the embedded model's vocabulary (49,152 tokens) and CoNLL04 sentences:
   llguidance (what fishdip uses) and xgrammar (if installed: ``pip install xgrammar``). Per sentence,
   the time to compile its grammar (formats/grammar.py; llguidance's Lark, the same rules in
   xgrammar's EBNF), and per token of the sentence's gold output, the time to compute the next
   token's mask and advance. Every gold output must be accepted by both.
2. Generation: the same model and sentences in length-sorted batches as evaluation runs them,
   constrained greedy search (``greedy_rows`` with the grammars), then free greedy search with each
   row's budget the length the constrained row wrote: the same decoding steps, so the time
   difference is the grammar's cost per token.

Prints a table and writes JSON (default benchmarks/results/constrained-<device>.json).

Run:  python benchmarks/constrained.py [--sentences 48] [--model PATH_OR_embedded] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from efficiency import machine_name  # this folder is the script's path

from fishdip.io import write_json_atomic

HERE = Path(__file__).resolve().parent


def ebnf_of(lark: str) -> str:
    """The grammar in xgrammar's EBNF: the same rules, ``::=`` and ``root``."""
    lines = []
    for line in lark.strip().splitlines():
        name, body = line.split(": ", 1)
        lines.append(f"{'root' if name == 'start' else name} ::= {body}")
    return "\n".join(lines) + "\n"


def engines(loaded, grammars, golds) -> list[dict]:
    import llguidance
    import llguidance.torch as lt

    tok = loaded.tokenizer
    ids = [tok(" " + g, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for g in golds]
    rows = []
    lltok = loaded.grammar_tokenizer()
    compile_s, mask_s = [], []
    bitmask = lt.allocate_token_bitmask(1, lltok.vocab_size)
    for grammar, tokens in zip(grammars, ids):
        started = time.perf_counter()
        matcher = llguidance.LLMatcher(lltok, grammar.lark, log_level=0)
        compile_s.append(time.perf_counter() - started)
        for token in tokens:
            started = time.perf_counter()
            lt.fill_next_token_bitmask(matcher, bitmask, 0)
            assert matcher.consume_token(token), matcher.get_error()
            mask_s.append(time.perf_counter() - started)
    rows.append(_engine_row("llguidance", compile_s, mask_s))
    try:
        import xgrammar
    except ImportError:
        print("xgrammar not installed: pip install xgrammar to compare it")
        return rows
    info = xgrammar.TokenizerInfo.from_huggingface(tok, vocab_size=lltok.vocab_size)
    compiler = xgrammar.GrammarCompiler(info)
    compile_s, mask_s = [], []
    bitmask = xgrammar.allocate_token_bitmask(1, info.vocab_size)
    for grammar, tokens in zip(grammars, ids):
        started = time.perf_counter()
        compiled = compiler.compile_grammar(ebnf_of(grammar.lark))
        compile_s.append(time.perf_counter() - started)
        matcher = xgrammar.GrammarMatcher(compiled)
        for token in tokens:
            started = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            assert matcher.accept_token(token)
            mask_s.append(time.perf_counter() - started)
    rows.append(_engine_row("xgrammar", compile_s, mask_s))
    return rows


def _engine_row(name: str, compile_s: list[float], mask_s: list[float]) -> dict:
    return {"engine": name, "sentences": len(compile_s), "tokens": len(mask_s),
            "compile_ms_median": round(1000 * statistics.median(compile_s), 3),
            "compile_ms_max": round(1000 * max(compile_s), 3),
            "mask_ms_median": round(1000 * statistics.median(mask_s), 4),
            "mask_ms_p90": round(1000 * sorted(mask_s)[int(0.9 * len(mask_s))], 4),
            "ms_per_sentence": round(1000 * (sum(compile_s) + sum(mask_s)) / len(compile_s), 3)}


def generation(loaded, task, examples, batch_size: int) -> list[dict]:
    """Constrained greedy search, then free greedy search run to the same row lengths (each row's
    budget the number of tokens it wrote constrained): the same batches and decoding steps, so the
    difference is what the grammar costs."""
    from fishdip.models.constrained import GrammarRows
    from fishdip.models.encoding import prompt_ids
    from fishdip.models.generation import greedy_rows

    tok, device = loaded.tokenizer, next(loaded.model.parameters()).device
    loaded.model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(task.source(examples[i])))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    lengths, seconds = {}, {"constrained": 0.0, "free": 0.0}
    for decoding in ("constrained", "free"):
        for ids in batches:
            prompts = [prompt_ids(loaded, task.source(examples[i]), 256) for i in ids]
            enc = tok.pad({"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt")
            if decoding == "constrained":
                grammars = [task.grammar(examples[i], loaded.budget) for i in ids]
                limits, choose = [g.max_bytes + 1 for g in grammars], GrammarRows(
                    loaded.grammar_tokenizer(), [g.lark for g in grammars]).choose
            else:
                limits, choose = [lengths[i] for i in ids], None
            started = time.perf_counter()
            rows = greedy_rows(loaded.model, enc["input_ids"].to(device), enc["attention_mask"].to(device), limits,
                               tok.eos_token_id, choose)
            seconds[decoding] += time.perf_counter() - started
            if decoding == "constrained":
                lengths.update({i: len(row) for i, row in zip(ids, rows)})
    tokens = sum(lengths.values())
    free, constrained = tokens / seconds["free"], tokens / seconds["constrained"]
    return [{"decoding": "free, to the same row lengths", "seconds": round(seconds["free"], 2), "new_tokens": tokens,
             "tokens_per_s": round(free, 1)},
            {"decoding": "constrained", "seconds": round(seconds["constrained"], 2), "new_tokens": tokens,
             "tokens_per_s": round(constrained, 1), "x_free_per_token": round(free / constrained, 3)}]


def main() -> None:
    import torch

    from fishdip.models.loading import load_model
    from fishdip.tasks import load_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=48)
    parser.add_argument("--model", default="embedded", help="a model name or folder (a trained one: its budget)")
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    loaded = load_model(args.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded.model.to(device)
    task = load_task("conll04", args.data_dir)
    examples = task.read("test")[: args.sentences]
    grammars = [task.grammar(ex, loaded.budget) for ex in examples]
    result = {"machine": machine_name(device), "torch": torch.__version__, "model": args.model,
              "sentences": len(examples),
              "engines": engines(loaded, grammars, [task.target(ex) for ex in examples]),
              "generation": generation(loaded, task, examples, args.batch_size)}
    print("| engine | compile ms (median / max) | mask + advance ms per token (median / p90) | ms per sentence |")
    print("|---|---|---|---|")
    for r in result["engines"]:
        print(f"| {r['engine']} | {r['compile_ms_median']} / {r['compile_ms_max']} | {r['mask_ms_median']} / "
              f"{r['mask_ms_p90']} | {r['ms_per_sentence']} |")
    print("\n| greedy search | s | new tokens | tokens/s | time per token, x free |\n|---|---|---|---|---|")
    for r in result["generation"]:
        print(f"| {r['decoding']} | {r['seconds']} | {r['new_tokens']} | {r['tokens_per_s']} | "
              f"{r.get('x_free_per_token', 1.0)} |")
    out = Path(args.output or HERE / "results" / f"constrained-{'cuda' if torch.cuda.is_available() else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
