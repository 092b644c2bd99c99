"""A task ties a dataset to its text format, its episodes and its metrics.

Training sees only (source, target) strings; evaluation turns model output back
into structures and scores them. The experiment runner calls only the methods of
``Task``; adding a task family means adding one subclass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fishdip.data.datasets import DatasetSpec, dataset_dir, event_schemas, get_spec, load_schema, load_split
from fishdip.data.sampling import sample_indices
from fishdip.errors import DataError
from fishdip.evaluation.metrics import joint_er_scores, prf
from fishdip.formats import dst
from fishdip.formats import entity_relation as er
from fishdip.formats import events as ev
from fishdip.formats import relation_classification as rc
from fishdip.formats.decoders import get_decoder


@dataclass
class Task:
    dataset: str
    family: str
    decoder: str = "fishdip"  # how generated text becomes structures (formats/decoders.py)

    def decode_text(self, text: str, tokens: list[str], schema: er.Schema) -> er.Decoded:
        return get_decoder(self.decoder)(text, tokens, schema)

    def splits(self, cfg) -> tuple[list, list]:
        """The whole training split and the (limited) evaluation split."""
        train_all, _ = load_split(self.dataset, "train", cfg.data_dir, cfg.fold, cfg.strict_tags)
        eval_examples, _ = load_split(self.dataset, cfg.eval_split, cfg.data_dir, cfg.fold, cfg.strict_tags)
        return train_all, eval_examples[: cfg.eval_limit] if cfg.eval_limit is not None else eval_examples

    def episode_data(self, episode: int, cfg) -> tuple[list, list, dict]:
        """Training subset and evaluation examples of one episode, plus what to record about it."""
        train_all, eval_examples = self.splits(cfg)
        indices = sample_indices(len(train_all), episode, fraction=cfg.train_fraction, size=cfg.train_size)
        return [train_all[i] for i in indices], eval_examples, {"train_indices": indices}

    def pairs(self, examples: list) -> list[tuple[str, str]]:
        return [(self.source(ex), self.target(ex)) for ex in examples]

    def predict(self, loaded, examples: list, cfg, context: dict | None = None,
                progress: bool = True) -> tuple[list[str], list]:
        """Generated texts and decoded structures; ``context`` is what episode_data recorded."""
        from fishdip.evaluation.predict import predict

        return predict(loaded, self, examples, cfg.eval_batch_size, cfg.train.max_length, cfg.num_beams,
                       progress=progress)

    def metadata(self) -> dict:
        return {"task": self.dataset, "family": self.family, "decoder": self.decoder}


@dataclass
class JointERTask(Task):
    """Joint entity and relation extraction; NER is the same format with no relation types."""

    schema: er.Schema = field(default_factory=lambda: er.Schema({}))
    macro_average: bool = False  # also macro P/R/F1 over the schema's types (ADE)

    def source(self, example: er.Example) -> str:
        return er.sentence(example.tokens)

    def target(self, example: er.Example) -> str:
        return er.encode(example, self.schema)

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


@dataclass
class SRLTask(JointERTask):
    """Semantic role labeling: one example per predicate, marked in the input; the output tags
    its arguments (the predicate itself is not an argument and is not scored)."""

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


@dataclass
class EventDecoded:
    triggers: set
    arguments: set  # Relation(role, Entity(span, "argument"), trigger)
    errors: Counter


@dataclass
class EventTask(Task):
    """Event extraction: a trigger pass, then one argument pass per trigger (chained at prediction)."""

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

    def predict(self, loaded, examples: list, cfg, context: dict | None = None,
                progress: bool = True) -> tuple[list[str], list]:
        from fishdip.evaluation.predict import LIMIT_ERROR, generate_texts

        sources = [self.source(ex) for ex in examples]
        trigger_out = generate_texts(loaded, sources, cfg, progress, "triggers")
        decoded = [self.decode_text(t, ex.tokens, self.triggers) for t, ex in zip(trigger_out.texts, examples)]
        jobs = [(i, trig) for i, d in enumerate(decoded) for trig in sorted(d.entities)]
        arg_out = generate_texts(loaded, [ev.argument_source(examples[i].tokens, trig, self.triggers)
                                          for i, trig in jobs], cfg, progress, "arguments")
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
        views = {
            "trigger_identification": lambda e: {(t.start, t.end) for t in e.triggers},
            "trigger_classification": lambda e: {(t.start, t.end, t.type) for t in e.triggers},
            # an argument is identified when its span and its event's type are right (Li et al. 2013)
            "argument_identification": lambda e: {(a.head.start, a.head.end, a.tail.type) for a in e.arguments},
            "argument_classification": lambda e: {(a.head.start, a.head.end, a.tail.type, a.type)
                                                  for a in e.arguments},
        }
        metrics: dict = {"num_examples": len(golds)}
        errors: Counter = Counter()
        for name, view in views.items():
            c = p = g = 0
            for gold, pred in zip(golds, preds):
                gs, ps = view(gold), view(pred)
                c, p, g = c + len(gs & ps), p + len(ps), g + len(gs)
            for key, value in prf(c, p, g).items():
                metrics[f"{name}_{key}"] = value
        for pred in preds:
            errors.update(pred.errors)
        metrics["errors"] = dict(sorted(errors.items()))
        return metrics

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


@dataclass
class DSTTask(Task):
    """Dialogue state tracking: history in, the belief state of every active domain out."""

    def episode_data(self, episode: int, cfg) -> tuple[list, list, dict]:
        """Low-resource subsets are drawn over whole dialogues, not turns."""
        train_all, eval_examples = self.splits(cfg)
        dialogues = list(dict.fromkeys(ex.dialogue for ex in train_all))
        chosen = [dialogues[i] for i in sample_indices(len(dialogues), episode, fraction=cfg.train_fraction,
                                                        size=cfg.train_size)]
        keep = set(chosen)
        return [ex for ex in train_all if ex.dialogue in keep], eval_examples, {"train_dialogues": chosen}

    def source(self, ex) -> str:
        return ex.history

    def target(self, ex) -> str:
        return dst.encode(ex.belief)

    def decode(self, text: str, ex) -> dst.DSTDecoded:
        return dst.decode(text)

    def score(self, golds: list, preds: list) -> dict:
        return dst.scores(golds, preds)

    def prediction_row(self, ex, generated: str, pred) -> dict:
        return {"id": ex.id, "input": ex.history, "generated": generated, "predicted": pred.belief,
                "gold": ex.belief, "errors": dict(pred.errors)}


@dataclass
class FewShotRCTask(Task):
    """N-way K-shot relation classification (FewRel): train on the support set, classify queries
    by scoring every candidate relation's output with the model's loss and taking the lowest."""

    names: dict[str, str] = field(default_factory=dict)  # relation id -> natural name
    folder: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def _data(self, split: str, spec: DatasetSpec):
        from fishdip.data.datasets import find_file
        from fishdip.data.fewrel import read_fewrel, relation_names

        if split not in self._cache:
            self._cache[split] = read_fewrel(find_file(spec, self.folder, split))
            self.names = {**relation_names(self._cache[split], self.names), **self.names}
        return self._cache[split]

    def _episode_pool(self, cfg) -> dict:
        """The relations episodes are drawn from: all of the file's, less a holdout meta-training half."""
        from fishdip.data.fewrel import HOLDOUT, holdout_split

        data = self._data(cfg.eval_split, get_spec(self.dataset))
        if cfg.meta_train == HOLDOUT:
            return {r: data[r] for r in holdout_split(list(data))[1]}
        if cfg.meta_train:
            overlap = sorted(set(self._meta_data(cfg)) & set(data))
            if overlap:
                raise DataError(f"--meta-train {cfg.meta_train}: relations {', '.join(overlap)} also occur in the "
                                f"episodes' file; meta-training relations must be disjoint from them")
        return data

    def _meta_data(self, cfg) -> dict:
        from fishdip.data.fewrel import HOLDOUT, holdout_split, read_fewrel, relation_names

        if cfg.meta_train == HOLDOUT:
            data = self._data(cfg.eval_split, get_spec(self.dataset))
            return {r: data[r] for r in holdout_split(list(data))[0]}
        meta = read_fewrel(Path(cfg.meta_train))
        self.names = {**relation_names(meta, self.names), **self.names}
        return meta

    def meta_pairs(self, cfg) -> list[tuple[str, str]]:
        """Training pairs of the meta-training stage (``--meta-train``), before any episode."""
        from fishdip.data.fewrel import meta_training_instances

        return self.pairs(meta_training_instances(self._meta_data(cfg), cfg.meta_train_size))

    def episode_data(self, episode: int, cfg) -> tuple[list, list, dict]:
        from fishdip.data.fewrel import sample_episode

        ep = sample_episode(self._episode_pool(cfg), cfg.n_way, cfg.k_shot, cfg.n_queries, seed=episode)
        query = ep.query
        if cfg.eval_limit:  # the first queries of every relation, so each keeps its share
            per = max(1, cfg.eval_limit // cfg.n_way)
            query = [q for r in range(cfg.n_way) for q in ep.query[r * cfg.n_queries:(r + 1) * cfg.n_queries][:per]]
        return ep.support, query, {"relations": ep.relations, "support": [ex.id for ex in ep.support]}

    def source(self, ex: rc.RCExample) -> str:
        return rc.source(ex)

    def target(self, ex: rc.RCExample) -> str:
        return rc.target(ex, self.names[ex.relation])

    def decode(self, text: str, ex: rc.RCExample) -> rc.RCDecoded:
        return rc.decode(text, self.names)

    def predict(self, loaded, examples: list, cfg, context: dict | None = None,
                progress: bool = True) -> tuple[list[str], list]:
        from fishdip.evaluation.predict import candidate_losses, lowest

        # the episode's N relations are the candidates; without an episode, those in the examples
        candidates = (context or {}).get("relations") or sorted({ex.relation for ex in examples})
        losses = candidate_losses(loaded, [self.source(ex) for ex in examples],
                                  [[rc.target(ex, self.names[r]) for r in candidates] for ex in examples],
                                  cfg.eval_batch_size, cfg.train.max_length, progress)
        decoded = []
        for i in range(len(examples)):
            by_score = {name: candidates[lowest(rows[i])] for name, rows in losses.items()}
            decoded.append(rc.RCDecoded(by_score[cfg.rc_score], by_score=by_score))
        texts = [rc.target(ex, self.names[d.relation]) for ex, d in zip(examples, decoded)]
        return texts, decoded

    def score(self, golds: list[rc.RCExample], preds: list[rc.RCDecoded]) -> dict:
        correct = sum(g.relation == p.relation for g, p in zip(golds, preds))
        errors: dict[str, int] = {}
        for p in preds:
            for k, v in p.errors.items():
                errors[k] = errors.get(k, 0) + v
        metrics = {"num_examples": len(golds), "accuracy": correct / len(golds) if golds else 0.0}
        for name in sorted({k for p in preds for k in p.by_score}):  # both rankings, for comparison
            right = sum(g.relation == p.by_score.get(name) for g, p in zip(golds, preds))
            metrics[f"accuracy_{name}_loss"] = right / len(golds) if golds else 0.0
        return {**metrics, "errors": errors}

    def prediction_row(self, ex: rc.RCExample, generated: str, pred: rc.RCDecoded) -> dict:
        return {"id": ex.id, "input": self.source(ex), "generated": generated,
                "predicted": pred.relation, "gold": ex.relation, "by_score": pred.by_score,
                "errors": dict(pred.errors)}

    def metadata(self) -> dict:
        return {**super().metadata(), "relation_names": self.names}


def load_task(name: str, data_dir: Path | str | None = None, decoder: str = "fishdip") -> Task:
    get_decoder(decoder)  # a wrong name fails here, before any file is read
    spec = get_spec(name)
    if spec.family == "fewshot_rc":
        from fishdip.data.fewrel import read_relation_names

        folder = dataset_dir(spec, data_dir)
        return FewShotRCTask(name, spec.family, decoder=decoder, names=read_relation_names(folder / spec.types_file),
                             folder=folder)
    if spec.family == "dst":
        dataset_dir(spec, data_dir)  # fail early, with guidance, when the files are not there
        return DSTTask(name, spec.family, decoder=decoder)
    if spec.family == "event":
        triggers, roles, allowed = event_schemas(dataset_dir(spec, data_dir))
        return EventTask(name, spec.family, decoder=decoder, triggers=triggers, roles=roles, allowed=allowed)
    task_class = SRLTask if spec.family == "srl" else JointERTask
    return task_class(name, spec.family, decoder=decoder, schema=load_schema(name, data_dir),
                      macro_average=spec.macro_average)


def task_from_metadata(meta: dict, decoder: str | None = None) -> Task:
    """The task a trained model was saved with; ``decoder`` overrides the one it was scored with."""
    decoder = decoder or meta.get("decoder", "fishdip")
    get_decoder(decoder)
    if meta["family"] == "dst":
        return DSTTask(meta["task"], meta["family"], decoder=decoder)
    if meta["family"] == "event":
        return EventTask(meta["task"], meta["family"], decoder=decoder, triggers=er.Schema.from_dict(meta["triggers"]),
                         roles=er.Schema.from_dict(meta["roles"]),
                         allowed={k: set(v) for k, v in meta["allowed"].items()})
    if meta["family"] == "fewshot_rc":
        return FewShotRCTask(meta["task"], meta["family"], decoder=decoder, names=meta["relation_names"])
    task_class = SRLTask if meta["family"] == "srl" else JointERTask
    return task_class(meta["task"], meta["family"], decoder=decoder, schema=er.Schema.from_dict(meta["schema"]),
                      macro_average=meta.get("macro_average", False))
