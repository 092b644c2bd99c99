"""The scorers, in one place: P/R/F1 (``prf``, over named set views: ``set_scores``), accuracy, and
``count_errors``, which sums the format errors every family reports under ``"errors"``. A task
family says what it compares (its views, its match) in its own module and names the metrics its
tables show (``Task.metrics``, tasks/).

Joint entity and relation extraction, as TANL defines it:

- entity: exact span and type; entity (no type): exact span.
- relation: relation type, and both entities' exact spans and types;
  relation (no type): relation type and both exact spans, entity types ignored.
Micro-averaged over the evaluation set; with ``macro_types``, also macro-averaged over the
dataset's entity and relation types as SpERT and TANL do for ADE (the mean of the per-type
precisions, recalls and F1 scores, as scikit-learn's ``average="macro"``; a type with no gold
and no prediction scores 0, as there).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter

from fishdip.formats.entity_relation import Decoded, Entity, Example, Relation


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _untyped_entity(e: Entity) -> tuple[int, int]:
    return (e.start, e.end)


def _untyped_relation(r: Relation) -> tuple:
    return (r.type, _untyped_entity(r.head), _untyped_entity(r.tail))


def joint_er_scores(golds: list[Example], preds: list[Decoded],
                    macro_types: tuple[list[str], list[str]] | None = None) -> dict:
    """Micro P/R/F1 for entities and relations, with and without entity types, plus error counts;
    ``macro_types`` = (entity type keys, relation type keys) adds macro-averaged P/R/F1."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold examples but {len(preds)} predictions")
    counts: Counter = Counter()
    for gold, pred in zip(golds, preds):
        views = {
            "entity": (set(gold.entities), pred.entities),
            "entity_no_type": ({_untyped_entity(e) for e in gold.entities},
                               {_untyped_entity(e) for e in pred.entities}),
            "relation": (set(gold.relations), pred.relations),
            "relation_no_type": ({_untyped_relation(r) for r in gold.relations},
                                 {_untyped_relation(r) for r in pred.relations}),
        }
        for name, (g, p) in views.items():
            counts[name, "gold"] += len(g)
            counts[name, "predicted"] += len(p)
            counts[name, "correct"] += len(g & p)
    metrics: dict = {"num_examples": len(golds)}
    for name in ("entity", "relation", "entity_no_type", "relation_no_type"):
        scores = prf(counts[name, "correct"], counts[name, "predicted"], counts[name, "gold"])
        prefix = name.replace("_no_type", "")
        suffix = "_no_type" if name.endswith("_no_type") else ""
        for key, value in scores.items():
            metrics[f"{prefix}_{key}{suffix}"] = value
    metrics["per_type"] = per_type_scores(golds, preds)
    if macro_types is not None:
        per_relation = per_type_scores(golds, preds, relations=True)
        for name, types, table in (("entity", macro_types[0], metrics["per_type"]),
                                   ("relation", macro_types[1], per_relation)):
            for key in ("precision", "recall", "f1"):
                values = [table[t][key] if t in table else 0.0 for t in types]
                metrics[f"{name}_macro_{key}"] = sum(values) / len(values) if values else 0.0
        metrics["per_relation_type"] = per_relation
    metrics["errors"] = count_errors(preds)
    return metrics


def count_errors(preds: list) -> dict[str, int]:
    """Format errors summed over the predictions (each has an ``errors`` Counter), by name."""
    errors: Counter = Counter()
    for pred in preds:
        errors.update(pred.errors)
    return dict(sorted(errors.items()))


def set_scores(golds: list, preds: list, views: dict) -> dict:
    """Micro P/R/F1 of each named view (``view(example) -> set`` of what must match), as ``<view>_f1`` ..."""
    metrics: dict = {"num_examples": len(golds)}
    for name, view in views.items():
        c = p = g = 0
        for gold, pred in zip(golds, preds):
            gs, ps = view(gold), view(pred)
            c, p, g = c + len(gs & ps), p + len(ps), g + len(gs)
        for key, value in prf(c, p, g).items():
            metrics[f"{name}_{key}"] = value
    return {**metrics, "errors": count_errors(preds)}


def accuracy(golds: list, preds: list, same) -> float:
    """The fraction of (gold, prediction) pairs that ``same(gold, pred)`` accepts (0 for none)."""
    return sum(bool(same(g, p)) for g, p in zip(golds, preds)) / len(golds) if golds else 0.0


def per_type_scores(golds: list[Example], preds: list[Decoded],
                    relations: bool = False) -> dict[str, dict[str, float]]:
    """Entity P/R/F1 (exact span and type) for each entity type, with gold support; with
    ``relations``, the same for each relation type (relation as in the micro score)."""
    counts: Counter = Counter()
    for gold, pred in zip(golds, preds):
        g, p = (set(gold.relations), pred.relations) if relations else (set(gold.entities), pred.entities)
        for e in g:
            counts[e.type, "gold"] += 1
        for e in p:
            counts[e.type, "predicted"] += 1
        for e in g & p:
            counts[e.type, "correct"] += 1
    types = sorted({t for t, _ in counts})
    return {t: {**prf(counts[t, "correct"], counts[t, "predicted"], counts[t, "gold"]),
                "support": counts[t, "gold"]} for t in types}


def aggregate(per_episode: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (0 for one episode) of every numeric metric."""
    keys = [k for k, v in per_episode[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for key in keys:
        values = [float(m[key]) for m in per_episode if key in m]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = {"mean": statistics.fmean(values), "std": 0.0 if math.isnan(std) else std,
                    "n": len(values)}
    return out
