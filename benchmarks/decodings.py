"""Free against constrained decoding on the same trained models, paired.

For each saved model (a run folder's ``models/episode-<i>``, or its run folder) and each split,
generate with every decoding (tasks/options.DECODINGS, or those of ``--decodings``: greedy, the
model's own budget for free decoding, the grammar's for the constrained ones), decode and score;
write every sentence's outputs and every metric set. The differences from ``--baseline`` (free
decoding; and own-brackets - constrained) are then paired by model (an episode of a method), with
the 95 % t interval over the models given. A model already in the output file gets only the
decodings it lacks.

Run:  python benchmarks/decodings.py RUN_OR_MODEL [...] --split test [--limit 100] --output FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from fishdip.io import write_json_atomic

METRICS = ("entity_f1", "relation_f1", "entity_f1_no_type", "relation_f1_no_type")


def score(model: str, split: str, limit: int | None, data_dir: str | None, decodings: list[str],
          out: dict | None = None) -> dict:
    """The model's outputs and scores with each of ``decodings``, added to ``out`` (its entry so far)."""
    import fishdip
    from fishdip.tasks.options import GenerationOptions

    predictor = fishdip.load(model)
    task = predictor.task
    from fishdip.data.datasets import load_split

    examples, _ = load_split(task.dataset, split, data_dir)
    examples = examples[:limit] if limit else examples
    out = out or {"model": model, "split": split, "sentences": len(examples)}
    texts = {}
    for decoding in decodings:
        started = time.perf_counter()
        gen = GenerationOptions(batch_size=64, max_length=predictor.max_length, decoding=decoding)
        generated, decoded = task.predict(predictor.loaded, examples, gen, progress=False)
        metrics = task.score(examples, decoded)
        out[decoding] = {"metrics": metrics, "seconds": round(time.perf_counter() - started, 1),
                         "cut_at_budget": metrics["errors"].get("generation_limit", 0),
                         "sentences_with_an_error": sum(bool(d.errors) for d in decoded)}
        texts[decoding] = generated
    rows = out.get("rows") or [{"id": ex.id} for ex in examples]
    out["rows"] = [{**row, **{d: texts[d][i] for d in decodings}} for i, row in enumerate(rows)]
    return out


def differences(run: dict, data_dir: str | None, baseline: str = "free") -> dict[str, Counter]:
    """Where each decoding's entities differ from the ``baseline`` decoding's, per decoding over the
    run's sentences: entities it has and the baseline has not (right: in the gold set, or wrong),
    those on words the baseline's output left out, those on a span the baseline typed otherwise;
    and the entities the baseline has and it has not."""
    import fishdip
    from fishdip.data.datasets import load_split
    from fishdip.formats.entity_relation import escape
    from fishdip.formats.tanl import parse

    task = fishdip.load(run["model"]).task
    examples = load_split(task.dataset, run["split"], data_dir)[0]
    counts: dict[str, Counter] = {}
    for ex, row in zip(examples, run["rows"]):
        gold, free = set(ex.entities), task.decode(row[baseline], ex).entities
        free_words = parse(row[baseline]).plain.split()
        for decoding in (k for k in row if k not in ("id", baseline)):
            other, c = task.decode(row[decoding], ex).entities, counts.setdefault(decoding, Counter())
            for e in other - free:
                c["gained, right" if e in gold else "gained, wrong"] += 1
                words = [escape(t) for t in ex.tokens[e.start:e.end]]
                if not any(free_words[i:i + len(words)] == words for i in range(len(free_words))):
                    c["gained, on words free left out" + (", right" if e in gold else ", wrong")] += 1
                if any((f.start, f.end) == (e.start, e.end) for f in free):
                    c["gained, a span free typed otherwise" + (", right" if e in gold else ", wrong")] += 1
            for e in free - other:
                c["lost, right" if e in gold else "lost, wrong"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split", default="test", choices=("dev", "test"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", required=True)
    parser.add_argument("--decodings", default=None, help="comma-separated (default: every one)")
    parser.add_argument("--baseline", default="free", help="the decoding the others are compared with")
    args = parser.parse_args()
    from fishdip.reports.grid import paired
    from fishdip.tasks.options import DECODINGS

    wanted = args.decodings.split(",") if args.decodings else list(DECODINGS)
    if args.baseline not in wanted or set(wanted) - set(DECODINGS):
        parser.error(f"--decodings: some of {DECODINGS}, --baseline among them")
    path = Path(args.output)
    results = json.loads(path.read_text()) if path.is_file() else {"runs": []}  # resumable: a model at a time
    entries = {r["model"]: r for r in results["runs"]}
    for model in args.models:
        missing = [d for d in wanted if d not in entries.get(model, {})]
        if not missing:
            continue
        entry = score(model, args.split, args.limit, args.data_dir, missing, entries.get(model))
        if model not in entries:
            results["runs"].append(entry)
            entries[model] = entry
        write_json_atomic(path, results)
        print(f"scored {model}: {', '.join(missing)}", flush=True)
    runs = [r for r in results["runs"] if all(d in r for d in wanted)]
    if not runs:  # a file of an older version, with two decodings: their differences only
        runs = results["runs"]
        decodings = [d for d in wanted if all(d in r for r in runs)]
    else:
        decodings = [args.baseline, *(d for d in wanted if d != args.baseline)]
    mean = lambda d: 100 * sum(d.values()) / len(d)  # noqa: E731
    print(f"{len(runs)} models, {args.split}: | metric | " + " | ".join(decodings) + " | difference [95 % CI] | wins |")
    summary = {}
    for metric in METRICS:
        by = {d: {i: r[d]["metrics"][metric] for i, r in enumerate(runs) if metric in r[d]["metrics"]}
              for d in decodings}
        if not by[decodings[0]]:
            continue
        pairs = [(d, decodings[0]) for d in decodings[1:]]
        pairs += [("own-brackets", "constrained")] if {"own-brackets", "constrained"} <= set(decodings) else []
        for a, b in pairs:
            p = paired(by[a], by[b])
            summary[f"{metric}: {a} - {b}"] = vars(p)
            print(f"| {metric} | " + " | ".join(f"{mean(by[d]):.1f}" for d in decodings) +
                  f" | {a} - {b}: {100 * p.mean:+.1f} [{100 * p.low:+.1f}, {100 * p.high:+.1f}] | {p.wins}/{p.n} |")
    for key in ("cut_at_budget", "sentences_with_an_error", "seconds"):
        print(f"{key}: " + ", ".join(f"{d} {[r[d][key] for r in runs]}" for d in decodings))
    results["summary"] = summary
    diffs: dict[str, Counter] = {}
    for run in runs:
        for decoding, counts in differences(run, args.data_dir, decodings[0]).items():
            diffs.setdefault(decoding, Counter()).update(counts)
    for decoding, counts in diffs.items():
        print(f"entities, {decoding} against {decodings[0]} (all models): "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    results["differences"] = {d: dict(sorted(c.items())) for d, c in diffs.items()}
    write_json_atomic(path, results)


if __name__ == "__main__":
    main()
