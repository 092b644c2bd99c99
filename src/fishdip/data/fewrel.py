"""FewRel files and N-way K-shot episodes.

A FewRel file maps relation ids to instances:
``{"P177": [{"tokens": [...], "h": [name, qid, [[idx, ...], ...]], "t": [...]}, ...]}``;
``pid2name.json`` maps ids to ``[name, description]``. A mention may occur several
times (several index lists); the first occurrence is marked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from fishdip.errors import DataError
from fishdip.io import read_json
from fishdip.structures import RCExample


def _span(mention, n_tokens: int, where: str, role: str) -> tuple[int, int]:
    try:
        positions = [int(i) for i in mention[2][0]]
    except (IndexError, TypeError, ValueError):
        raise DataError(f"{where}: '{role}' must be [name, id, [[token indices]]]") from None
    if not positions or min(positions) < 0 or max(positions) >= n_tokens:
        raise DataError(f"{where}: '{role}' token indices {positions} outside the {n_tokens} tokens")
    return min(positions), max(positions) + 1


def read_fewrel(path: Path) -> dict[str, list[RCExample]]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object mapping relation ids to instance lists")
    out: dict[str, list[RCExample]] = {}
    for relation, instances in data.items():
        out[relation] = []
        for i, raw in enumerate(instances):
            where = f"{path}: relation {relation}, instance {i}"
            tokens = raw.get("tokens") if isinstance(raw, dict) else None
            if not isinstance(tokens, list) or not tokens:
                raise DataError(f"{where}: 'tokens' must be a non-empty list")
            out[relation].append(RCExample(tokens, _span(raw.get("h"), len(tokens), where, "h"),
                                           _span(raw.get("t"), len(tokens), where, "t"), relation,
                                           id=f"{relation}:{i}"))
    return out


def read_relation_names(path: Path) -> dict[str, str]:
    data = read_json(path)
    try:
        return {pid: str(value[0]).lower() for pid, value in data.items()}
    except (AttributeError, IndexError, TypeError):
        raise DataError(f"{path}: expected {{relation id: [name, description]}}") from None


def relation_names(data: dict[str, list[RCExample]], known: dict[str, str]) -> dict[str, str]:
    """Names for every relation in ``data``: pid2name's when known (Wikidata ids), else the key
    itself made readable (FewRel 2.0's PubMed keys are already names: ``gene_found_in_organism``)."""
    return {r: known.get(r) or r.replace("_", " ").lower() for r in data}


HOLDOUT = "holdout"
HOLDOUT_SEED = 0


def holdout_split(relations: list[str]) -> tuple[list[str], list[str]]:
    """``--meta-train holdout``: the offline stand-in for FewRel's unreleased setup (train_wiki's
    64 relations for meta-training, val_wiki's 16 for episodes). The file's relations, sorted and
    shuffled with seed 0, are halved: the first half for meta-training, the second for episodes."""
    order = sorted(relations)
    random.Random(HOLDOUT_SEED).shuffle(order)
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:])


def meta_training_instances(data: dict[str, list[RCExample]], size: int | None, seed: int = 0) -> list[RCExample]:
    """``size`` instances drawn evenly over the relations (all of them when ``size`` is None)."""
    pool = [ex for relation in sorted(data) for ex in data[relation]]
    if size is None or size >= len(pool):
        return pool
    rng = random.Random(seed)
    per_relation = {r: rng.sample(data[r], len(data[r])) for r in sorted(data)}
    chosen: list[RCExample] = []
    while len(chosen) < size:  # round robin, so every relation is seen about equally often
        for relation in sorted(per_relation):
            if per_relation[relation] and len(chosen) < size:
                chosen.append(per_relation[relation].pop())
    return chosen


@dataclass
class Episode:
    relations: list[str]  # the N candidate relations
    support: list[RCExample]  # N * K training instances
    query: list[RCExample]  # N * Q instances to classify


def sample_episode(data: dict[str, list[RCExample]], n_way: int, k_shot: int, n_queries: int,
                   seed: int) -> Episode:
    """Episode ``seed``: N relations, K support and Q query instances each, all distinct."""
    if n_way > len(data):
        raise DataError(f"{n_way}-way episodes need {n_way} relations; the file has {len(data)}")
    rng = random.Random(seed)
    relations = sorted(rng.sample(sorted(data), n_way))
    support, query = [], []
    for relation in relations:
        if len(data[relation]) < k_shot + n_queries:
            raise DataError(f"relation {relation} has {len(data[relation])} instances; "
                            f"need {k_shot + n_queries}")
        chosen = rng.sample(data[relation], k_shot + n_queries)
        support += chosen[:k_shot]
        query += chosen[k_shot:]
    return Episode(relations, support, query)
