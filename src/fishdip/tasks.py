"""A task ties a dataset to its text format and metrics.

Training sees only (source, target) strings; evaluation decodes generated text
back into structures and scores them. Adding a task family means adding one
class with these five methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fishdip.data.datasets import get_spec, load_schema, load_split
from fishdip.evaluation.metrics import joint_er_scores
from fishdip.formats import entity_relation as er


@dataclass
class JointERTask:
    """Joint entity and relation extraction (also NER, with no relation types)."""

    dataset: str
    schema: er.Schema
    family: str = "joint_er"

    def source(self, example: er.Example) -> str:
        return er.sentence(example.tokens)

    def target(self, example: er.Example) -> str:
        return er.encode(example, self.schema)

    def decode(self, text: str, example: er.Example) -> er.Decoded:
        return er.decode(text, example.tokens, self.schema)

    def score(self, golds: list[er.Example], preds: list[er.Decoded]) -> dict:
        return joint_er_scores(golds, preds)

    def to_json(self, tokens: list[str], entities, relations) -> dict:
        """Structures as plain JSON (text, type, token span) for predictions files."""
        def entity(e: er.Entity) -> dict:
            return {"text": " ".join(tokens[e.start : e.end]), "type": e.type, "start": e.start, "end": e.end}

        return {
            "entities": [entity(e) for e in sorted(entities)],
            "relations": [{"type": r.type, "head": entity(r.head), "tail": entity(r.tail)}
                          for r in sorted(relations)],
        }

    def metadata(self) -> dict:
        return {"task": self.dataset, "family": self.family, "schema": self.schema.to_dict()}


def load_task(name: str, data_dir: Path | str | None = None) -> JointERTask:
    spec = get_spec(name)
    return JointERTask(name, load_schema(name, data_dir), family=spec.family)


def task_from_metadata(meta: dict) -> JointERTask:
    return JointERTask(meta["task"], er.Schema.from_dict(meta["schema"]), family=meta["family"])


__all__ = ["JointERTask", "load_task", "task_from_metadata", "load_split"]
