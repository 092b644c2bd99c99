"""Event extraction: triggers, then arguments per trigger."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from fishdip.data.datasets import event_schemas
from fishdip.evaluation.metrics import set_scores
from fishdip.formats import entity_relation as er
from fishdip.formats import events as ev
from fishdip.formats.grammar import Grammar, copy_grammar, decoding_rules
from fishdip.structures import EventDecoded
from fishdip.tasks.base import Task
from fishdip.tasks.options import GenerationOptions

# what must match for each score (micro P/R/F1 over the evaluation set)
VIEWS = {
    "trigger_identification": lambda e: {(t.start, t.end) for t in e.triggers},
    "trigger_classification": lambda e: {(t.start, t.end, t.type) for t in e.triggers},
    # an argument is identified when its span and its event's type are right (Li et al. 2013)
    "argument_identification": lambda e: {(a.head.start, a.head.end, a.tail.type) for a in e.arguments},
    "argument_classification": lambda e: {(a.head.start, a.head.end, a.tail.type, a.type) for a in e.arguments},
}


@dataclass
class EventTask(Task):
    """Event extraction: a trigger pass, then one argument pass per trigger (chained at prediction)."""

    metrics: ClassVar[tuple[str, ...]] = ("trigger_classification_f1", "argument_classification_f1",
                                          "trigger_identification_f1", "argument_identification_f1")
    constrains: ClassVar[bool] = True

    @classmethod
    def load(cls, source, decoder: str) -> EventTask:
        triggers, roles, allowed = event_schemas(source.folder)
        return cls(source.name, source.family, decoder=decoder, corpus=source, triggers=triggers, roles=roles,
                   allowed=allowed)

    @classmethod
    def from_metadata(cls, meta: dict, decoder: str) -> EventTask:
        return cls(meta["task"], meta["family"], decoder=decoder, triggers=er.Schema.from_dict(meta["triggers"]),
                   roles=er.Schema.from_dict(meta["roles"]), allowed={k: set(v) for k, v in meta["allowed"].items()})

    triggers: er.Schema = field(default_factory=lambda: er.Schema({}))
    roles: er.Schema = field(default_factory=lambda: er.Schema({}))
    allowed: dict[str, set[str]] = field(default_factory=dict)

    def source(self, ex) -> str:
        return er.sentence(ex.tokens)

    def target(self, ex) -> str:
        return ev.trigger_target(ex.tokens, ex.triggers, self.triggers)

    def _arguments_of(self, ex, trigger) -> list[er.Entity]:
        return [er.Entity(r.head.start, r.head.end, r.type) for r in ex.arguments if r.tail == trigger]

    def pairs(self, examples: list) -> list[tuple[str, str]]:
        """Both stages train one model: the trigger pair and one argument pair per gold trigger."""
        out = []
        for ex in examples:
            out.append((self.source(ex), self.target(ex)))
            for trigger in ex.triggers:
                out.append((ev.argument_source(ex.tokens, trigger, self.triggers),
                            ev.argument_target(ex.tokens, self._arguments_of(ex, trigger), self.roles)))
        return out

    def decode_arguments(self, text: str, ex, trigger) -> tuple[set, Counter]:
        decoded = self.decode_text(text, ex.tokens, self.roles)
        errors, args = Counter(decoded.errors), set()
        for arg in decoded.entities:
            if arg.type not in self.allowed.get(trigger.type, set()):
                errors["role_not_in_schema"] += 1
                continue
            args.add(er.Relation(arg.type, er.Entity(arg.start, arg.end, "argument"), trigger))
        return args, errors

    def grammar(self, example, budget) -> Grammar:
        """The trigger pass: annotated copies of the sentence with trigger types."""
        return copy_grammar([er.escape(t) for t in example.tokens], list(self.triggers.entity_types.values()),
                            longest_tail=budget.longest_span)

    def predict(self, loaded, examples: list, gen: GenerationOptions, context: dict | None = None,
                progress: bool = True, demonstrations=None, journal=None) -> tuple[list[str], list]:
        from fishdip.evaluation.predict import LIMIT_ERROR, generate_sorted

        decoding = self.decoding(gen)
        constrained = decoding != "free"

        def generate_texts(sources: list[str], desc: str, grammars: list | None):
            return generate_sorted(loaded, sources, gen.batch_size, gen.max_length, gen.num_beams, progress, desc,
                                   demonstrations, grammars if constrained else None,
                                   copy_ahead=gen.copy_ahead, rules=decoding_rules(decoding),
                                   journal=journal)

        sources = [self.source(ex) for ex in examples]
        trigger_out = generate_texts(sources, "triggers", [self.grammar(ex, loaded.budget) for ex in examples])
        decoded = [self.decode_text(t, ex.tokens, self.triggers) for t, ex in zip(trigger_out.texts, examples)]
        jobs = [(i, trig) for i, d in enumerate(decoded) for trig in sorted(d.entities)]
        roles = list(self.roles.entity_types.values())  # an argument pass copies the sentence with roles
        arg_grammars = [copy_grammar([er.escape(t) for t in examples[i].tokens], roles,
                                     longest_tail=loaded.budget.longest_span) for i, _ in jobs]
        arg_out = generate_texts([ev.argument_source(examples[i].tokens, trig, self.triggers) for i, trig in jobs],
                                 "arguments", arg_grammars)
        results = [EventDecoded(set(d.entities), set(), Counter(d.errors)) for d in decoded]
        for result, hit in zip(results, trigger_out.hit_limit):
            result.errors[LIMIT_ERROR] += hit
        texts = list(trigger_out.texts)
        for (i, trig), text, hit in zip(jobs, arg_out.texts, arg_out.hit_limit):
            args, errors = self.decode_arguments(text, examples[i], trig)
            results[i].arguments |= args
            results[i].errors.update(errors)
            results[i].errors[LIMIT_ERROR] += hit
            texts[i] += f" || {text}"
        for result in results:
            result.errors = +result.errors  # drop zero counts
        return texts, results

    def decode(self, text: str, ex) -> EventDecoded:
        """Decode ``trigger text || argument text || ...`` (one argument text per predicted trigger)."""
        trigger_text, *arg_texts = text.split(" || ")
        d = self.decode_text(trigger_text, ex.tokens, self.triggers)
        out = EventDecoded(set(d.entities), set(), Counter(d.errors))
        for trig, arg_text in zip(sorted(d.entities), arg_texts):
            args, errors = self.decode_arguments(arg_text, ex, trig)
            out.arguments |= args
            out.errors.update(errors)
        return out

    def gold_text(self, ex) -> str:
        """What a perfect model would write (trigger pass, then one argument pass per trigger)."""
        parts = [self.target(ex)] + [ev.argument_target(ex.tokens, self._arguments_of(ex, t), self.roles)
                                     for t in sorted(set(ex.triggers))]
        return " || ".join(parts)

    def score(self, golds: list, preds: list[EventDecoded]) -> dict:
        return set_scores(golds, preds, VIEWS)

    def prediction_row(self, ex, generated: str, pred: EventDecoded) -> dict:
        def events(triggers, arguments):
            return [{"trigger": " ".join(ex.tokens[t.start:t.end]), "type": t.type, "start": t.start, "end": t.end,
                     "arguments": [{"text": " ".join(ex.tokens[a.head.start:a.head.end]), "role": a.type,
                                    "start": a.head.start, "end": a.head.end}
                                   for a in sorted(arguments) if a.tail == t]}
                    for t in sorted(triggers)]

        return {"id": ex.id, "input": self.source(ex), "generated": generated,
                "predicted": events(pred.triggers, pred.arguments), "gold": events(ex.triggers, ex.arguments),
                "errors": dict(pred.errors)}

    def metadata(self) -> dict:
        return {**super().metadata(), "triggers": self.triggers.to_dict(), "roles": self.roles.to_dict(),
                "allowed": {k: sorted(v) for k, v in self.allowed.items()}}


