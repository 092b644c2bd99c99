"""The task interface: what the trainer and the runner call (nothing else looks inside a task)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fishdip.data.datasets import load_split
from fishdip.data.sampling import sample_indices
from fishdip.formats import entity_relation as er
from fishdip.formats.decoders import get_decoder
from fishdip.options import ConfigError


@dataclass
class Task:
    """A family's subclass implements ``source`` / ``target`` (example -> text), ``decode`` (text ->
    structures), ``score``, ``prediction_row``, and the two constructors below."""

    dataset: str
    family: str
    decoder: str = "fishdip"  # how generated text becomes structures (formats/decoders.py)

    meta_training: ClassVar[bool] = False  # has a meta-training stage before its episodes (--meta-train)

    @classmethod
    def check_options(cls, cfg) -> None:
        """Refuse (``ConfigError``) a run config this family cannot run; called when the config is made."""
        if cfg.meta_train is not None and not cls.meta_training:
            raise ConfigError(f"--meta-train: only for few-shot tasks (a meta-training stage), not {cfg.task}")

    @classmethod
    def load(cls, name: str, spec, data_dir, decoder: str) -> Task:
        """The task of dataset ``name`` (``spec``: its registry row), its schema read from ``data_dir``."""
        raise NotImplementedError

    @classmethod
    def from_metadata(cls, meta: dict, decoder: str) -> Task:
        """The task a saved model records in its fishdip.json (``metadata()``)."""
        raise NotImplementedError

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
        indices = sample_indices(len(train_all), episode, fraction=cfg.train_fraction, size=cfg.train_size,
                                 rule=cfg.subset_sampling)
        return [train_all[i] for i in indices], eval_examples, {"train_indices": indices}

    def curve_examples(self, cfg) -> list:
        """The sentences a learning curve is scored on (``--curve-split``, first ``--curve-limit``)."""
        examples, _ = load_split(self.dataset, cfg.curve_split, cfg.data_dir, cfg.fold, cfg.strict_tags)
        return examples[: cfg.curve_limit]

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


