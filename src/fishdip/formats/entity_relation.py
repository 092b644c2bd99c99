"""Joint entity and relation extraction in TANL's augmented natural language.

``[ Hakawati Theatre | organization | organization based in = Jerusalem ] in [ Jerusalem | location ]``

Named entity recognition is the same format without relations.

One extension to TANL: a relation names its tail by surface text, which is
ambiguous when several entities share that text. Decoding picks the candidate
nearest to the head; only when that rule would pick the wrong one does encoding
append ``#n`` ("the n-th entity with this text"), so gold text decodes exactly.
"""

from __future__ import annotations

import re
from collections import Counter

from fishdip.formats.alignment import align
from fishdip.formats.tanl import CLOSE, OPEN, SEP, parse
from fishdip.structures import Decoded, Entity, Example, Relation, Schema

# Characters that structure the output; input tokens never contain them after escaping.
_ESCAPES = str.maketrans({OPEN: "(", CLOSE: ")", SEP: "/"})
_ORDINAL = re.compile(r"^(.*\S)\s+#(\d+)$")


def escape(token: str) -> str:
    return token.translate(_ESCAPES)


def sentence(tokens: list[str]) -> str:
    """The model's input text for a tokenized sentence."""
    return " ".join(escape(t) for t in tokens)


def name_key(text: str) -> str:
    """How a relation tail's written name is matched to an entity's text: case and spacing aside."""
    return "".join(text.lower().split())


def _nearest(candidates: list[Entity], head: Entity) -> Entity:
    return min(candidates, key=lambda e: (abs(e.start - head.start), e.start))


def _tail_text(example: Example, relation: Relation) -> str:
    name = sentence(example.tokens[relation.tail.start : relation.tail.end])
    same = sorted(
        {e for e in example.entities if name_key(sentence(example.tokens[e.start : e.end])) == name_key(name)}
    )
    if len(same) > 1 and _nearest(same, relation.head) != relation.tail:
        return f"{name} #{same.index(relation.tail) + 1}"
    return name


def encode(example: Example, schema: Schema) -> str:
    """Gold structures -> augmented text."""
    by_start: dict[int, list[Entity]] = {}
    for entity in sorted(set(example.entities)):
        by_start.setdefault(entity.start, []).append(entity)
    relations: dict[Entity, list[Relation]] = {}
    for relation in sorted(set(example.relations)):
        relations.setdefault(relation.head, []).append(relation)

    words: list[str] = []
    i = 0
    while i < len(example.tokens):
        if i in by_start:
            entity = by_start[i][0]  # the formats of this family are flat: one span per start
            fields = [sentence(example.tokens[entity.start : entity.end]), schema.entity_types[entity.type]]
            for relation in relations.get(entity, []):
                fields.append(f"{schema.relation_types[relation.type]} = {_tail_text(example, relation)}")
            words.append(f"{OPEN} {f' {SEP} '.join(fields)} {CLOSE}")
            i = entity.end
        else:
            words.append(escape(example.tokens[i]))
            i += 1
    return " ".join(words)


def decode(text: str, tokens: list[str], schema: Schema) -> Decoded:
    """Generated text -> structures aligned to ``tokens``. Never raises; problems are counted."""
    parsed = parse(text)
    errors = Counter(parsed.errors)
    edges = {offset for b in parsed.brackets for offset in (b.start, b.end)}
    alignment = align(parsed.plain, [escape(t) for t in tokens], edges)
    entity_keys = {name.lower(): key for key, name in schema.entity_types.items()}
    relation_keys = {name.lower(): key for key, name in schema.relation_types.items()}

    placed: list[tuple[Entity, str, list[str]]] = []  # entity, written name, relation fields
    for bracket in parsed.brackets:
        if not bracket.fields:
            errors["missing_type"] += 1
            continue
        type_key = entity_keys.get(bracket.fields[0].lower())
        if type_key is None:
            errors["unknown_entity_type"] += 1
            continue
        span = alignment.token_span(bracket.start, bracket.end)
        if span is None:
            errors["unaligned_entity"] += 1
            continue
        placed.append((Entity(span[0], span[1], type_key), bracket.text, bracket.fields[1:]))

    entities = {entity for entity, _, _ in placed}
    ordered = sorted(entities)
    names: dict[str, list[Entity]] = {}
    for entity in ordered:
        names.setdefault(name_key(sentence(tokens[entity.start : entity.end])), []).append(entity)
    for entity, written, _ in placed:  # a misspelled copy is still findable by what was written
        if entity not in names.get(name_key(written), []):
            names.setdefault(name_key(written), []).append(entity)

    relations: set[Relation] = set()
    for head, _, fields in placed:
        for item in fields:
            if "=" not in item:
                errors["malformed_relation"] += 1
                continue
            rel_name, tail_name = (part.strip() for part in item.split("=", 1))
            rel_key = relation_keys.get(rel_name.lower())
            if rel_key is None:
                errors["unknown_relation_type"] += 1
                continue
            ordinal = None
            match = _ORDINAL.match(tail_name)
            if match and name_key(match.group(1)) in names:
                tail_name, ordinal = match.group(1), int(match.group(2))
            candidates = sorted(names.get(name_key(tail_name), []))
            if not candidates:
                errors["missing_tail"] += 1
                continue
            if ordinal is not None and 1 <= ordinal <= len(candidates):
                tail = candidates[ordinal - 1]
            else:
                tail = _nearest(candidates, head)
            relations.add(Relation(rel_key, head, tail))
    return Decoded(entities, relations, errors)
