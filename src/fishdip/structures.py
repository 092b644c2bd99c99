"""What every family reads and writes, in one place below formats/ and data/: the examples a reader
makes, the schema of types, and what decoding a generated text gives. Readers (data/) build these,
formats (formats/) turn them into text and back, tasks score them.

Spans are token offsets with the end exclusive; types and relations are the dataset's keys (the
natural names the model writes are the ``Schema``'s values).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


# -- entities and relations (joint ER, NER, SRL arguments, events) ---------------------------------
@dataclass(frozen=True, order=True)
class Entity:
    start: int  # token offsets, end exclusive
    end: int
    type: str  # dataset type key, e.g. "Peop"


@dataclass(frozen=True, order=True)
class Relation:
    type: str
    head: Entity
    tail: Entity


@dataclass
class Example:
    tokens: list[str]
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    id: str = ""


@dataclass
class Schema:
    """Type keys and the natural-language names the model reads and writes."""

    entity_types: dict[str, str]  # key -> natural name
    relation_types: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"entity_types": self.entity_types, "relation_types": self.relation_types}

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        return cls(dict(data["entity_types"]), dict(data.get("relation_types", {})))


@dataclass
class Decoded:
    entities: set[Entity]
    relations: set[Relation]
    errors: Counter


@dataclass
class SRLExample(Example):
    predicate: int = 0  # token index of the predicate
    relations: list = field(default_factory=list)


@dataclass
class EventExample:
    tokens: list[str]
    triggers: list[Entity] = field(default_factory=list)  # type = event type key
    arguments: list[Relation] = field(default_factory=list)  # type = role, head = argument, tail = trigger
    id: str = ""


@dataclass
class EventDecoded:
    triggers: set
    arguments: set  # Relation(role, Entity(span, "argument"), trigger)
    errors: Counter



# -- few-shot relation classification ----------------------------------------------------------
@dataclass
class RCExample:
    tokens: list[str]
    head: tuple[int, int]  # token span, end exclusive
    tail: tuple[int, int]
    relation: str  # relation key, e.g. "P177"
    id: str = ""


@dataclass
class RCDecoded:
    relation: str | None
    errors: Counter = field(default_factory=Counter)
    by_score: dict[str, str] = field(default_factory=dict)  # candidate ranking -> relation it chose



# -- dialogue state tracking ---------------------------------------------------------------------
@dataclass
class DSTExample:
    history: str  # "[user] ... [system] ... [user] ..."
    belief: dict[str, str]  # "hotel-area" -> "north"; filled slots only
    id: str = ""  # "<dialogue>:<turn>"
    dialogue: str = ""


@dataclass
class DSTDecoded:
    belief: dict[str, str]
    errors: Counter = field(default_factory=Counter)
