"""Joint entity-relation extraction and NER (one format; NER has no relation types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fishdip.data.datasets import Dataset
from fishdip.evaluation.metrics import joint_er_scores
from fishdip.formats import entity_relation as er
from fishdip.formats.grammar import Grammar, copy_grammar
from fishdip.tasks.base import Task


@dataclass
class JointERTask(Task):
    """Joint entity and relation extraction; NER is the same format with no relation types."""

    metrics: ClassVar[tuple[str, ...]] = ("entity_f1", "relation_f1", "entity_macro_f1", "relation_macro_f1",
                                          "entity_f1_no_type", "relation_f1_no_type")
    constrains: ClassVar[bool] = True

    @classmethod
    def load(cls, source, decoder: str) -> JointERTask:
        macro = isinstance(source, Dataset) and source.spec.macro_average
        return cls(source.name, source.family, decoder=decoder, corpus=source, schema=source.schema(),
                   macro_average=macro)

    @classmethod
    def from_metadata(cls, meta: dict, decoder: str) -> JointERTask:
        return cls(meta["task"], meta["family"], decoder=decoder, schema=er.Schema.from_dict(meta["schema"]),
                   macro_average=meta.get("macro_average", False))

    schema: er.Schema = field(default_factory=lambda: er.Schema({}))
    macro_average: bool = False  # also macro P/R/F1 over the schema's types (ADE)

    def source(self, example: er.Example) -> str:
        return er.sentence(example.tokens)

    def target(self, example: er.Example) -> str:
        return er.encode(example, self.schema)

    def grammar(self, example: er.Example, budget) -> Grammar:
        """Annotated copies of the example's words with the schema's types (and relations)."""
        relations = list(self.schema.relation_types.values()) if self.family == "joint_er" else []
        return copy_grammar([er.escape(t) for t in example.tokens], list(self.schema.entity_types.values()),
                            relations, budget.max_relations, budget.longest_span)

    def decode(self, text: str, example: er.Example) -> er.Decoded:
        return self.decode_text(text, example.tokens, self.schema)

    def score(self, golds: list[er.Example], preds: list[er.Decoded]) -> dict:
        types = (list(self.schema.entity_types), list(self.schema.relation_types))
        metrics = joint_er_scores(golds, preds, types if self.macro_average else None)
        if self.family == "ner":  # no relations: their scores would be meaningless zeros
            metrics = {k: v for k, v in metrics.items() if not k.startswith("relation_")}
        return metrics

    def prediction_row(self, ex: er.Example, generated: str, pred: er.Decoded) -> dict:
        return {"id": ex.id, "input": self.source(ex), "generated": generated,
                "predicted": self.to_json(ex.tokens, pred.entities, pred.relations),
                "gold": self.to_json(ex.tokens, ex.entities, ex.relations), "errors": dict(pred.errors)}

    def to_json(self, tokens: list[str], entities, relations) -> dict:
        """Structures as plain JSON (text, type, token span)."""
        def entity(e: er.Entity) -> dict:
            return {"text": " ".join(tokens[e.start : e.end]), "type": e.type, "start": e.start, "end": e.end}

        out = {"entities": [entity(e) for e in sorted(entities)]}
        if self.family == "joint_er":
            out["relations"] = [{"type": r.type, "head": entity(r.head), "tail": entity(r.tail)}
                                for r in sorted(relations)]
        return out

    def metadata(self) -> dict:
        return {**super().metadata(), "schema": self.schema.to_dict(), "macro_average": self.macro_average}


