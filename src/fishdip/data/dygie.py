"""Reader for ACE2005 joint entity-relation extraction in the DyGIE layout that TANL reads
(``ace2005_joint_er``; the corpus is LDC-licensed, preprocessed with DyGIE's scripts).

A file holds one JSON document per line: ``{"sentences": [[tokens], ...], "ner": [[[start, end,
type], ...] per sentence], "relations": [[[start1, end1, start2, end2, type], ...] per sentence]}``.
Offsets count tokens from the start of the document and ends are inclusive. As TANL does, a sentence
without entities is left out, and so is one where a relation's span matches two entities (the same
span with two types), so that scores compare with TANL's.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity, Example, Relation, Schema
from fishdip.io import iter_jsonl

# TANL's natural-language names for ACE2005's types
ACE2005_SCHEMA = Schema(
    {"PER": "person", "LOC": "location", "ORG": "organization", "VEH": "vehicle", "GPE": "geographical entity",
     "WEA": "weapon", "FAC": "facility"},
    {"PHYS": "located in", "ART": "artifact", "ORG-AFF": "employer", "GEN-AFF": "affiliation",
     "PER-SOC": "social", "PART-WHOLE": "part of"},
)


def _ints(values, n: int, where: str) -> list[int]:
    if not isinstance(values, list) or len(values) != n + 1 or \
            any(isinstance(v, bool) or not isinstance(v, int) for v in values[:n]):
        raise DataError(f"{where}: expected [{', '.join(['int'] * n)}, type], got {values!r}")
    return values[:n]


def _sentence(tokens, ner, relations, offset: int, schema: Schema, where: str) -> Example | None:
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: a sentence must be a non-empty list of strings")
    if not isinstance(ner, list) or not isinstance(relations, list):
        raise DataError(f"{where}: its 'ner' and 'relations' entries must be lists")
    entities = []
    for item in ner:
        start, end = _ints(item, 2, f"{where}: entity {item!r}")
        kind = item[2]
        if kind not in schema.entity_types:
            raise DataError(f"{where}: unknown entity type {kind!r} (known: {', '.join(schema.entity_types)})")
        if not offset <= start <= end < offset + len(tokens):
            raise DataError(f"{where}: entity [{start}, {end}] is outside the sentence's tokens "
                            f"{offset}..{offset + len(tokens) - 1} (document offsets, inclusive ends)")
        entities.append(Entity(start - offset, end - offset + 1, kind))
    if not entities:
        return None
    out = []
    for item in relations:
        s1, e1, s2, e2 = _ints(item, 4, f"{where}: relation {item!r}")
        if item[4] not in schema.relation_types:
            raise DataError(f"{where}: unknown relation type {item[4]!r} (known: {', '.join(schema.relation_types)})")
        heads = [e for e in entities if (e.start, e.end) == (s1 - offset, e1 - offset + 1)]
        tails = [e for e in entities if (e.start, e.end) == (s2 - offset, e2 - offset + 1)]
        if not heads or not tails:
            raise DataError(f"{where}: relation {item!r} points at a span that is not an entity")
        if len(heads) > 1 or len(tails) > 1:
            return None  # ambiguous: TANL leaves the sentence out
        out.append(Relation(item[4], heads[0], tails[0]))
    return Example(tokens, entities, out)


def read_dygie(path: Path, schema: Schema = ACE2005_SCHEMA) -> list[Example]:
    """Every usable sentence of every document; errors name the file, line and sentence."""
    examples = []
    for number, doc in iter_jsonl(path):
        if not {"sentences", "ner", "relations"} <= set(doc):
            raise DataError(f"{path}: line {number}: a document needs 'sentences', 'ner' and 'relations'")
        sentences, ner, relations = doc["sentences"], doc["ner"], doc["relations"]
        if not (isinstance(sentences, list) and isinstance(ner, list) and isinstance(relations, list)) \
                or not len(sentences) == len(ner) == len(relations):
            raise DataError(f"{path}: line {number}: 'sentences', 'ner' and 'relations' must be lists of equal "
                            f"length (one entry per sentence)")
        offset = 0
        for i, tokens in enumerate(sentences):
            where = f"{path}: line {number}: sentence {i}"
            example = _sentence(tokens, ner[i], relations[i], offset, schema, where)
            if example is not None:
                example.id = f"{doc.get('doc_key', number)}-{i}"
                examples.append(example)
            offset += len(tokens) if isinstance(tokens, list) else 0
    if not examples:
        raise DataError(f"{path}: no sentence with entities")
    return examples
