"""ACE2005 event extraction files in TANL's JSON layout.

``ace2005event_{split}.json``: a list of sentences
``{"tokens": [...], "entities": [{"type", "start", "end"}], "triggers": [{"type", "start", "end"}],
"relations": [{"type": role, "head": entity index, "tail": trigger index}]}`` (ends exclusive);
``ace2005event_types.json``: ``{"entities": {key: {"verbose"}}, "relations": {role: {"verbose"}}}``
(trigger types are listed with the entity types); ``ace2005event_schema.json``: for each trigger
type, the roles its arguments may take.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.data.spert import parse_link, parse_span
from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity, Relation, Schema
from fishdip.io import read_json
from fishdip.structures import EventExample


def read_event_types(types_path: Path, schema_path: Path) -> tuple[Schema, Schema, dict[str, set[str]]]:
    """Trigger schema, role schema, and allowed roles per trigger type."""
    types = read_json(types_path)
    try:
        entity_names = {k: v["verbose"].lower() for k, v in types["entities"].items()}
        role_names = {k: v["verbose"].lower() for k, v in types["relations"].items()}
    except (KeyError, AttributeError, TypeError):
        raise DataError(f"{types_path}: expected {{'entities': {{key: {{'verbose'}}}}, 'relations': ...}}") from None
    allowed = read_json(schema_path)
    if not isinstance(allowed, dict):
        raise DataError(f"{schema_path}: expected {{trigger type: [roles]}}")
    for trigger, roles in allowed.items():
        for role in roles:
            if role not in role_names:
                raise DataError(f"{schema_path}: trigger type {trigger!r} allows unknown role {role!r}")
    return Schema(entity_names), Schema(role_names), {k: set(v) for k, v in allowed.items()}


def read_events(path: Path, triggers: Schema, roles: Schema) -> list[EventExample]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of sentences")
    out = []
    for i, raw in enumerate(data):
        where = f"{path}: example {i}"
        tokens = raw.get("tokens") if isinstance(raw, dict) else None
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"{where}: 'tokens' must be a non-empty list")

        entities = [parse_span(e, f"{where}: entity {j}", tokens, None) for j, e in enumerate(raw.get("entities", []))]
        trigs = [parse_span(t, f"{where}: trigger {j}", tokens, triggers.entity_types)
                 for j, t in enumerate(raw.get("triggers", []))]
        args = []
        for j, rel in enumerate(raw.get("relations", [])):
            role, a, trigger = parse_link(rel, f"{where}: relation {j}", entities, trigs, roles.entity_types,
                                          ends=("entity", "trigger"), label="role")
            args.append(Relation(role, Entity(a.start, a.end, "argument"), trigger))
        out.append(EventExample(tokens, trigs, args, id=str(i)))
    return out
