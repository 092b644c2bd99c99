"""Reader for the SpERT JSON format (CoNLL04, ADE, SciERC releases).

A file is a JSON list of ``{"tokens": [...], "entities": [{"type", "start", "end"}],
"relations": [{"type", "head", "tail"}]}``; entity ends are exclusive and relations
point at entities by index. The types file maps type keys to verbose names.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity, Example, Relation, Schema
from fishdip.io import read_json


def read_types(path: Path) -> Schema:
    """``{"entities": {key: {"verbose": ...}}, "relations": {...}}`` -> Schema (names lower-cased)."""
    data = read_json(path)
    if not isinstance(data, dict) or "entities" not in data:
        raise DataError(f"{path}: expected an object with 'entities' (and 'relations')")
    try:
        entities = {k: v["verbose"].lower() for k, v in data["entities"].items()}
        relations = {k: v["verbose"].lower() for k, v in data.get("relations", {}).items()}
    except (KeyError, AttributeError, TypeError) as exc:
        raise DataError(f"{path}: every type needs a 'verbose' name ({exc})") from None
    return Schema(entities, relations)


def as_index(value, where: str, name: str) -> int:
    """A token or entity index: a JSON integer (not 1.5, "1" or true)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: '{name}' must be an integer index, got {value!r}")
    return value


def parse_span(item, where: str, tokens: list[str], known: dict | None) -> Entity:
    """``{"type", "start", "end"}`` -> Entity, checked against the tokens (and known types)."""
    if not isinstance(item, dict) or not {"type", "start", "end"} <= set(item):
        raise DataError(f"{where} needs 'type', 'start' and 'end'")
    start, end, kind = as_index(item["start"], where, "start"), as_index(item["end"], where, "end"), item["type"]
    if not 0 <= start < end <= len(tokens):
        raise DataError(f"{where} has span [{start}, {end}) outside the {len(tokens)} tokens")
    if known is not None and kind not in known:
        raise DataError(f"{where} has unknown type {kind!r}")
    return Entity(start, end, kind)


def parse_link(item, where: str, heads: list[Entity], tails: list[Entity], known: dict[str, str],
               ends: tuple[str, str] = ("entity", "entity"), label: str = "type") -> tuple[str, Entity, Entity]:
    """``{"type", "head", "tail"}`` -> (type, head, tail): the indices point into ``heads`` and ``tails``
    (named ``ends`` in errors), the type is one of ``known`` (a "role" for event arguments)."""
    if not isinstance(item, dict) or not {"type", "head", "tail"} <= set(item):
        raise DataError(f"{where} needs 'type', 'head' and 'tail'")
    chosen = []
    for role, pool, name in (("head", heads, ends[0]), ("tail", tails, ends[1])):
        k = as_index(item[role], where, role)
        if not 0 <= k < len(pool):
            raise DataError(f"{where} {role} points at missing {name} {k}")
        chosen.append(pool[k])
    if item["type"] not in known:
        raise DataError(f"{where} has unknown {label} {item['type']!r}")
    return item["type"], chosen[0], chosen[1]


def _parse_example(raw: dict, schema: Schema, where: str, index: int) -> Example:
    tokens = raw.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: 'tokens' must be a non-empty list of strings")
    blank = next((j for j, t in enumerate(tokens) if not t.strip()), None)
    if blank is not None:
        raise DataError(f"{where}: token {blank} is empty or whitespace ({tokens[blank]!r})")
    for key in ("entities", "relations"):
        if not isinstance(raw.get(key, []), list):
            raise DataError(f"{where}: {key!r} must be a list (got {type(raw[key]).__name__})")
    entities = [parse_span(ent, f"{where}: entity {j}", tokens, schema.entity_types)
                for j, ent in enumerate(raw.get("entities", []))]
    relations = [Relation(*parse_link(rel, f"{where}: relation {j}", entities, entities, schema.relation_types))
                 for j, rel in enumerate(raw.get("relations", []))]
    return Example(tokens, entities, relations, id=str(raw.get("orig_id", index)))


def read_spert(path: Path, schema: Schema) -> list[Example]:
    """Read and validate one SpERT JSON file; errors name the file and example index."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of examples")
    if not data:
        raise DataError(f"{path}: no examples (an empty list)")
    examples = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise DataError(f"{path}: example {i}: expected an object")
        examples.append(_parse_example(raw, schema, f"{path}: example {i}", i))
    return examples
