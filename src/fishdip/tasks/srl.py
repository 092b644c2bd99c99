"""Semantic role labeling: one example per predicate, arguments tagged like entities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fishdip.evaluation.metrics import joint_er_scores
from fishdip.formats import entity_relation as er
from fishdip.tasks.joint_er import JointERTask


@dataclass
class SRLTask(JointERTask):
    """Semantic role labeling: one example per predicate, marked in the input; the output tags
    its arguments (the predicate itself is not an argument and is not scored)."""

    metrics: ClassVar[tuple[str, ...]] = ("argument_f1", "argument_f1_no_type")

    def source(self, example) -> str:
        words = [er.escape(t) for t in example.tokens]
        words[example.predicate] = f"[ {words[example.predicate]} ]"
        return " ".join(words)

    def target(self, example) -> str:
        return er.encode(er.Example(example.tokens, example.entities), self.schema)

    def score(self, golds: list, preds: list[er.Decoded]) -> dict:
        metrics = joint_er_scores(golds, preds)
        return {k.replace("entity_", "argument_"): v for k, v in metrics.items() if not k.startswith("relation_")}

    def prediction_row(self, ex, generated: str, pred: er.Decoded) -> dict:
        return {**super().prediction_row(ex, generated, pred), "predicate": ex.predicate}


