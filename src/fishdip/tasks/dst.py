"""Dialogue state tracking (MultiWOZ, TRADE preprocessing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fishdip.data.sampling import sample_indices
from fishdip.evaluation.metrics import accuracy, count_errors
from fishdip.formats import dst
from fishdip.formats.grammar import Grammar
from fishdip.tasks.base import Task
from fishdip.tasks.options import DataOptions


@dataclass
class DSTTask(Task):
    """Dialogue state tracking: history in, the belief state of every active domain out."""

    metrics: ClassVar[tuple[str, ...]] = ("joint_goal_accuracy", "slot_accuracy")
    constrains: ClassVar[bool] = True

    @classmethod
    def load(cls, source, decoder: str) -> DSTTask:
        return cls(source.name, source.family, decoder=decoder, corpus=source)

    @classmethod
    def from_metadata(cls, meta: dict, decoder: str) -> DSTTask:
        return cls(meta["task"], meta["family"], decoder=decoder)

    def episode_data(self, episode: int, data: DataOptions) -> tuple[list, list, dict]:
        """Low-resource subsets are drawn over whole dialogues, not turns."""
        train_all, eval_examples = self.splits(data)
        dialogues = list(dict.fromkeys(ex.dialogue for ex in train_all))
        chosen = [dialogues[i] for i in sample_indices(len(dialogues), episode, fraction=data.train_fraction,
                                                        size=data.train_size, rule=data.subset_sampling)]
        keep = set(chosen)
        return [ex for ex in train_all if ex.dialogue in keep], eval_examples, {"train_dialogues": chosen}

    def source(self, ex) -> str:
        return ex.history

    def target(self, ex) -> str:
        return dst.encode(ex.belief)

    def grammar(self, example, budget) -> Grammar:
        """Slot names from the schema, in the order ``dst.encode`` writes them; values free words."""
        return dst.belief_grammar()

    def decode(self, text: str, ex) -> dst.DSTDecoded:
        return dst.decode(text)

    def score(self, golds: list, preds: list) -> dict:
        """Joint goal accuracy (filled slots equal as a set) and slot accuracy over TRADE's 30 slots."""
        slots = [g.belief.get(s, dst.NONE) == p.belief.get(s, dst.NONE)
                 for g, p in zip(golds, preds) for s in dst.ALL_SLOTS]
        return {"num_examples": len(golds),
                "joint_goal_accuracy": accuracy(golds, preds, lambda g, p: g.belief == p.belief),
                "slot_accuracy": sum(slots) / len(slots) if slots else 0.0, "errors": count_errors(preds)}

    def prediction_row(self, ex, generated: str, pred) -> dict:
        return {"id": ex.id, "input": ex.history, "generated": generated, "predicted": pred.belief,
                "gold": ex.belief, "errors": dict(pred.errors)}


