"""Event extraction in two stages, as TANL does it.

Trigger stage:  ``Two soldiers were [ attacked | attack ] yesterday``
Argument stage: the input marks one trigger with its type,
``Two soldiers were [ attacked | attack ] yesterday``, and the output tags that event's
arguments with their roles: ``[ Two soldiers | target ] were attacked yesterday``.
At prediction time the stages are chained: each predicted trigger gets one argument pass,
and roles the schema does not allow for that event type are dropped (and counted).
"""

from __future__ import annotations

from fishdip.formats import entity_relation as er
from fishdip.formats.tanl import CLOSE, OPEN, SEP


def trigger_target(tokens: list[str], triggers: list[er.Entity], schema: er.Schema) -> str:
    return er.encode(er.Example(tokens, triggers), schema)


def argument_source(tokens: list[str], trigger: er.Entity, schema: er.Schema) -> str:
    words = [er.escape(t) for t in tokens]
    marked = " ".join(words[trigger.start : trigger.end])
    return " ".join(words[: trigger.start] + [f"{OPEN} {marked} {SEP} {schema.entity_types[trigger.type]} {CLOSE}"]
                    + words[trigger.end :])


def argument_target(tokens: list[str], arguments: list[er.Entity], roles: er.Schema) -> str:
    """``arguments`` carry their role as type."""
    return er.encode(er.Example(tokens, arguments), roles)
