"""Few-shot relation classification (FewRel): candidates scored by loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from fishdip.data.datasets import DatasetSpec, get_spec
from fishdip.errors import DataError
from fishdip.evaluation.metrics import accuracy, count_errors
from fishdip.formats import relation_classification as rc
from fishdip.options import ConfigError
from fishdip.tasks.base import Task
from fishdip.tasks.options import DataOptions, GenerationOptions


@dataclass
class FewShotRCTask(Task):
    """N-way K-shot relation classification (FewRel): train on the support set, classify queries
    by scoring every candidate relation's output with the model's loss and taking the lowest."""

    meta_training: ClassVar[bool] = True
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "accuracy_sum_loss", "accuracy_mean_loss")
    decodes_text: ClassVar[bool] = False  # candidates are scored by loss: no generation to decode again

    def splits_read(self, data: DataOptions) -> list[str]:
        return [data.eval_split]  # episodes (support and queries) come from one file

    @staticmethod
    def describe_training(data: DataOptions) -> str:
        return f"{data.n_way}-way {data.k_shot}-shot episodes, {data.n_queries} queries per relation"

    @classmethod
    def check_options(cls, cfg) -> None:
        super().check_options(cfg)
        if cfg.eval_limit is not None and cfg.eval_limit % cfg.n_way:
            raise ConfigError(f"--eval-limit {cfg.eval_limit}: few-shot queries come in groups of --n-way "
                              f"{cfg.n_way}; use a multiple of {cfg.n_way} so every relation keeps its share")
        if not cfg.train.spec.trains:
            raise ConfigError(f"--method {cfg.train.method}: few-shot relation classification scores candidates "
                              "by loss, not by generation; in-context learning is for the generation tasks")
        if cfg.subset_sampling != "random":
            raise ConfigError(f"--subset-sampling {cfg.subset_sampling}: few-shot episodes are drawn as N-way "
                              "K-shot samples, not as a fraction of a split")
        if cfg.eval_every is not None:
            raise ConfigError("--eval-every: learning curves are for the generation tasks; few-shot episodes "
                              "have no fixed split to score on")

    @classmethod
    def load(cls, source, decoder: str) -> FewShotRCTask:
        from fishdip.data.fewrel import read_relation_names

        folder = source.folder
        return cls(source.name, source.family, decoder=decoder, corpus=source,
                   names=read_relation_names(folder / source.spec.types_file), folder=folder)

    @classmethod
    def from_metadata(cls, meta: dict, decoder: str) -> FewShotRCTask:
        return cls(meta["task"], meta["family"], decoder=decoder, names=meta["relation_names"])

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

    def _episode_pool(self, data: DataOptions) -> dict:
        """The relations episodes are drawn from: all of the file's, less a holdout meta-training half."""
        from fishdip.data.fewrel import HOLDOUT, holdout_split

        relations = self._data(data.eval_split, get_spec(self.dataset))
        if data.meta_train == HOLDOUT:
            return {r: relations[r] for r in holdout_split(list(relations))[1]}
        if data.meta_train:
            overlap = sorted(set(self._meta_data(data)) & set(relations))
            if overlap:
                raise DataError(f"{data.meta_train}: meta-training relations {', '.join(overlap)} also occur in the "
                                f"episodes' file; meta-training relations must be disjoint from them")
        return relations

    def _meta_data(self, data: DataOptions) -> dict:
        from fishdip.data.fewrel import HOLDOUT, holdout_split, read_fewrel, relation_names

        if data.meta_train == HOLDOUT:
            relations = self._data(data.eval_split, get_spec(self.dataset))
            return {r: relations[r] for r in holdout_split(list(relations))[0]}
        meta = read_fewrel(Path(data.meta_train))
        self.names = {**relation_names(meta, self.names), **self.names}
        return meta

    def meta_pairs(self, data: DataOptions) -> list[tuple[str, str]]:
        """Training pairs of the meta-training stage (``--meta-train``), before any episode."""
        from fishdip.data.fewrel import meta_training_instances

        return self.pairs(meta_training_instances(self._meta_data(data), data.meta_train_size))

    def episode_data(self, episode: int, data: DataOptions) -> tuple[list, list, dict]:
        from fishdip.data.fewrel import sample_episode

        ep = sample_episode(self._episode_pool(data), data.n_way, data.k_shot, data.n_queries, seed=episode)
        query = ep.query
        if data.eval_limit:  # the first queries of every relation, so each keeps its share
            per = max(1, data.eval_limit // data.n_way)
            query = [q for r in range(data.n_way) for q in ep.query[r * data.n_queries:(r + 1) * data.n_queries][:per]]
        return ep.support, query, {"relations": ep.relations, "support": [ex.id for ex in ep.support]}

    def source(self, ex: rc.RCExample) -> str:
        return rc.source(ex)

    def target(self, ex: rc.RCExample) -> str:
        return rc.target(ex, self.names[ex.relation])

    def decode(self, text: str, ex: rc.RCExample) -> rc.RCDecoded:
        return rc.decode(text, self.names)

    def predict(self, loaded, examples: list, gen: GenerationOptions, context: dict | None = None,
                progress: bool = True, demonstrations=None, journal=None) -> tuple[list[str], list]:
        from fishdip.evaluation.predict import candidate_losses, lowest

        # scored by loss, not generated: nothing for a journal to keep (a pass takes seconds)
        # the episode's N relations are the candidates; without an episode, those in the examples
        candidates = (context or {}).get("relations") or sorted({ex.relation for ex in examples})
        losses = candidate_losses(loaded, [self.source(ex) for ex in examples],
                                  [[rc.target(ex, self.names[r]) for r in candidates] for ex in examples],
                                  gen.batch_size, gen.max_length, progress)
        decoded = []
        for i in range(len(examples)):
            by_score = {name: candidates[lowest(rows[i])] for name, rows in losses.items()}
            decoded.append(rc.RCDecoded(by_score[gen.rc_score], by_score=by_score))
        texts = [rc.target(ex, self.names[d.relation]) for ex, d in zip(examples, decoded)]
        return texts, decoded

    def score(self, golds: list[rc.RCExample], preds: list[rc.RCDecoded]) -> dict:
        metrics = {"num_examples": len(golds),
                   "accuracy": accuracy(golds, preds, lambda g, p: g.relation == p.relation)}
        for name in sorted({k for p in preds for k in p.by_score}):  # both rankings, for comparison
            metrics[f"accuracy_{name}_loss"] = accuracy(golds, preds,
                                                        lambda g, p, name=name: g.relation == p.by_score.get(name))
        return {**metrics, "errors": count_errors(preds)}

    def prediction_row(self, ex: rc.RCExample, generated: str, pred: rc.RCDecoded) -> dict:
        return {"id": ex.id, "input": self.source(ex), "generated": generated,
                "predicted": pred.relation, "gold": ex.relation, "by_score": pred.by_score,
                "errors": dict(pred.errors)}

    def metadata(self) -> dict:
        return {**super().metadata(), "relation_names": self.names}

