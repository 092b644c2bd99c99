"""Free against constrained decoding on the same trained models, paired.

For each saved model (a run folder's ``models/episode-<i>``, or its run folder) and each split,
generate with every decoding (tasks/options.DECODINGS: greedy, the model's own budget for free
decoding, the grammar's for the constrained ones), decode and score; write every sentence's outputs
and every metric set. The differences from free decoding (and own-brackets - constrained) are then
paired by model (an episode of a method), with the 95 % t interval over the models given.

Run:  python benchmarks/decodings.py RUN_OR_MODEL [...] --split test [--limit 100] --output FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fishdip.io import write_json_atomic

METRICS = ("entity_f1", "relation_f1", "entity_f1_no_type", "relation_f1_no_type")


def score(model: str, split: str, limit: int | None, data_dir: str | None) -> dict:
    import fishdip
    from fishdip.tasks.options import DECODINGS, GenerationOptions

    predictor = fishdip.load(model)
    task = predictor.task
    from fishdip.data.datasets import load_split

    examples, _ = load_split(task.dataset, split, data_dir)
    examples = examples[:limit] if limit else examples
    out = {"model": model, "split": split, "sentences": len(examples)}
    texts = {}
    for decoding in DECODINGS:
        started = time.perf_counter()
        gen = GenerationOptions(batch_size=64, max_length=predictor.max_length, decoding=decoding)
        generated, decoded = task.predict(predictor.loaded, examples, gen, progress=False)
        metrics = task.score(examples, decoded)
        out[decoding] = {"metrics": metrics, "seconds": round(time.perf_counter() - started, 1),
                         "cut_at_budget": metrics["errors"].get("generation_limit", 0),
                         "sentences_with_an_error": sum(bool(d.errors) for d in decoded)}
        texts[decoding] = generated
    out["rows"] = [{"id": ex.id, **{d: texts[d][i] for d in DECODINGS}} for i, ex in enumerate(examples)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split", default="test", choices=("dev", "test"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    from fishdip.reports.grid import paired
    from fishdip.tasks.options import DECODINGS

    path = Path(args.output)
    results = json.loads(path.read_text()) if path.is_file() else {"runs": []}  # resumable: a model at a time
    done = {r["model"] for r in results["runs"]}
    for model in args.models:
        if model in done:
            continue
        results["runs"].append(score(model, args.split, args.limit, args.data_dir))
        write_json_atomic(path, results)
        print(f"scored {model}", flush=True)
    runs = [r for r in results["runs"] if all(d in r for d in DECODINGS)]  # older files: two decodings
    if not runs:
        raise SystemExit(f"{path}: no model scored with every decoding ({', '.join(DECODINGS)})")
    mean = lambda d: 100 * sum(d.values()) / len(d)  # noqa: E731
    print(f"{len(runs)} models, {args.split}: | metric | " + " | ".join(DECODINGS) + " | difference [95 % CI] | wins |")
    summary = {}
    for metric in METRICS:
        by = {d: {i: r[d]["metrics"][metric] for i, r in enumerate(runs) if metric in r[d]["metrics"]}
              for d in DECODINGS}
        if not by["free"]:
            continue
        for a, b in [(d, "free") for d in DECODINGS[1:]] + [("own-brackets", "constrained")]:
            p = paired(by[a], by[b])
            summary[f"{metric}: {a} - {b}"] = vars(p)
            print(f"| {metric} | " + " | ".join(f"{mean(by[d]):.1f}" for d in DECODINGS) +
                  f" | {a} - {b}: {100 * p.mean:+.1f} [{100 * p.low:+.1f}, {100 * p.high:+.1f}] | {p.wins}/{p.n} |")
    for key in ("cut_at_budget", "sentences_with_an_error", "seconds"):
        print(f"{key}: " + ", ".join(f"{d} {[r[d][key] for r in runs]}" for d in DECODINGS))
    results["summary"] = summary
    write_json_atomic(path, results)


if __name__ == "__main__":
    main()
