"""The task interface: what the trainer and the runner call (nothing else looks inside a task).

A family (one module of tasks/) subclasses ``Task`` and must provide the abstract members: how an
example becomes text (``source``, ``target``), how generated text becomes structures (``decode``),
how structures are scored (``score``, with the metric names ``metrics``), what a predictions row
holds (``prediction_row``), and its two constructors (``load`` from a resolved dataset,
``from_metadata`` from a saved model). Everything else has a default that a family may replace:
its training pairs (``pairs``), episodes (``episode_data``), generation (``predict``), the grammar
of its valid outputs for constrained decoding (``grammar``), and the options it refuses
(``check_options``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fishdip.data.datasets import DataSource
from fishdip.data.sampling import sample_indices
from fishdip.formats import entity_relation as er
from fishdip.formats.decoders import get_decoder
from fishdip.formats.grammar import Grammar
from fishdip.options import ConfigError
from fishdip.tasks.options import DataOptions, GenerationOptions, resolve_decoding


@dataclass
class Task(ABC):
    """One dataset (or a user's files) with its family's format, episodes and metrics."""

    dataset: str
    family: str
    decoder: str = "fishdip"  # how generated text becomes structures (formats/decoders.py)
    # where the examples come from, resolved once for a run (data/datasets.py: a registry dataset, or a
    # user's own files); None for a task rebuilt from a saved model's metadata
    corpus: DataSource | None = field(default=None, repr=False, compare=False)

    meta_training: ClassVar[bool] = False  # has a meta-training stage before its episodes (--meta-train)
    decodes_text: ClassVar[bool] = True  # its predictions are generated text, decoded (rescore decodes them again)
    constrains: ClassVar[bool] = False  # has a grammar of valid outputs (``grammar``): --decoding constrained
    # the scores its tables show, headline first (every F1 and accuracy ``score`` returns: tests/test_metrics.py)
    metrics: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_options(cls, cfg) -> None:
        """Refuse (``ConfigError``) a run config this family cannot run; called when the config is made."""
        if cfg.meta_train is not None and not cls.meta_training:
            raise ConfigError(f"--meta-train: only for few-shot tasks (a meta-training stage), not {cfg.task}")
        if cfg.decoding != "free" and not cls.constrains:
            raise ConfigError(f"--decoding {cfg.decoding}: {cfg.task}'s outputs have no grammar here (constrained "
                              "decoding covers the families whose output annotates its input: entities, "
                              "relations, SRL, events; and dialogue states); use --decoding free")

    # -- what a family must provide ------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load(cls, source: DataSource, decoder: str) -> Task:
        """The task of a resolved dataset (its schema read from it)."""

    @classmethod
    @abstractmethod
    def from_metadata(cls, meta: dict, decoder: str) -> Task:
        """The task a saved model records in its fishdip.json (``metadata()``)."""

    @abstractmethod
    def source(self, example: Any) -> str:
        """What the model reads for ``example``."""

    @abstractmethod
    def target(self, example: Any) -> str:
        """What the model is trained to write for ``example`` (the augmented text)."""

    @abstractmethod
    def decode(self, text: str, example: Any) -> Any:
        """Generated ``text`` -> the structures it annotates on ``example``'s input; never raises
        (what cannot be used is counted in the result's ``errors``)."""

    @abstractmethod
    def score(self, golds: list, preds: list) -> dict:
        """Metrics of decoded predictions against gold examples (each F1 / accuracy named in ``metrics``)."""

    @abstractmethod
    def prediction_row(self, example: Any, generated: str, pred: Any) -> dict:
        """One line of predictions.jsonl: input, generated text, predicted and gold structures, errors."""

    # -- defaults a family may replace ----------------------------------------------------------

    def decode_text(self, text: str, tokens: list[str], schema: er.Schema) -> er.Decoded:
        return get_decoder(self.decoder)(text, tokens, schema)

    def read(self, split: str) -> list:
        """The examples of one split of the task's data (parsed once per run: ``corpus`` keeps them)."""
        if self.corpus is None:
            raise ValueError(f"task {self.dataset} was rebuilt from a saved model and holds no data; "
                             "load it with its dataset (fishdip.tasks.load_task)")
        return self.corpus.split(split)

    def splits(self, data: DataOptions) -> tuple[list, list]:
        """The whole training split and the (limited) evaluation split."""
        train_all, eval_examples = self.read("train"), self.read(data.eval_split)
        return train_all, eval_examples[: data.eval_limit] if data.eval_limit is not None else eval_examples

    def splits_read(self, data: DataOptions) -> list[str]:
        """The splits an episode reads (their files' checksums identify a run's data)."""
        return ["train", data.eval_split]

    def episode_data(self, episode: int, data: DataOptions) -> tuple[list, list, dict]:
        """Training subset and evaluation examples of one episode, plus what to record about it."""
        train_all, eval_examples = self.splits(data)
        indices = sample_indices(len(train_all), episode, fraction=data.train_fraction, size=data.train_size,
                                 rule=data.subset_sampling)
        return [train_all[i] for i in indices], eval_examples, {"train_indices": indices}

    @staticmethod
    def describe_training(data: DataOptions) -> str:
        """An episode's training data in words (for comparison tables)."""
        if data.train_size:
            return f"{data.train_size} sentences"
        return f"{data.train_fraction:.0%} of the training split" if data.train_fraction else "the whole training split"

    def curve_examples(self, data: DataOptions) -> list:
        """The sentences a learning curve is scored on (``--curve-split``, first ``--curve-limit``)."""
        return self.read(data.curve_split)[: data.curve_limit]

    def pairs(self, examples: list) -> list[tuple[str, str]]:
        return [(self.source(ex), self.target(ex)) for ex in examples]

    def predict(self, loaded, examples: list, gen: GenerationOptions, context: dict | None = None,
                progress: bool = True, demonstrations=None, journal=None) -> tuple[list[str], list]:
        """Generated texts and decoded structures; ``context`` is what episode_data recorded;
        ``demonstrations`` (evaluation/icl.py): in-context learning's prefix for each source;
        ``journal`` (evaluation/journal.py): batches generated before a stop, and where new ones go."""
        from fishdip.evaluation.predict import predict

        return predict(loaded, self, examples, gen.batch_size, gen.max_length, gen.num_beams, progress,
                       demonstrations, self.decoding(gen), gen.copy_ahead, journal)

    def decoding(self, gen: GenerationOptions) -> str:
        """The decoding ``gen`` asks of this task, ``auto`` resolved (tasks/options.resolve_decoding)."""
        return resolve_decoding(gen.decoding, self.constrains, gen.num_beams)

    def grammar(self, example, budget) -> Grammar | None:
        """What constrained decoding lets the model write for ``example`` (formats/grammar.py), within
        the limits the training targets set (``budget``: models/loading.GenerationBudget); None: the
        family's outputs are not constrained (the option is refused for it: ``check_options``)."""
        return None

    def metadata(self) -> dict:
        return {"task": self.dataset, "family": self.family, "decoder": self.decoder}


