"""A task ties a dataset to its text format, its episodes and its metrics.

Training sees only (source, target) strings; evaluation turns model output back into structures
and scores them. The experiment runner calls only the methods of ``Task`` (base.py). One module
per task family; a new family is a reader (data/), a format (formats/), a module here with a
``Task`` subclass (``load`` from a dataset, ``from_metadata`` for a saved model) and one row of
``FAMILIES``.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.data.datasets import DataSource, open_dataset
from fishdip.formats.decoders import get_decoder
from fishdip.tasks.base import Task
from fishdip.tasks.dst import DSTTask
from fishdip.tasks.events import EventDecoded, EventTask
from fishdip.tasks.fewshot_rc import FewShotRCTask
from fishdip.tasks.joint_er import JointERTask
from fishdip.tasks.srl import SRLTask

# task family (DatasetSpec.family) -> its Task class
FAMILIES: dict[str, type[Task]] = {
    "joint_er": JointERTask,
    "ner": JointERTask,  # the joint format without relation types
    "srl": SRLTask,
    "event": EventTask,
    "dst": DSTTask,
    "fewshot_rc": FewShotRCTask,
}

# every metric a family's tables show, in the order tables show them (reports/, the grid's `metric`)
METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for cls in FAMILIES.values() for m in cls.metrics))

__all__ = ["FAMILIES", "METRICS", "DSTTask", "EventDecoded", "EventTask", "FewShotRCTask", "JointERTask",
           "SRLTask", "Task", "load_task", "task_from_metadata"]


def load_task(name: str, data_dir: Path | str | None = None, decoder: str = "fishdip", fold: int = 0,
              strict_tags: bool = False) -> Task:
    """The task of dataset ``name`` (found in ``data_dir``; resolved once, each split parsed once)."""
    get_decoder(decoder)  # a wrong name fails here, before any file is read
    return task_of(open_dataset(name, data_dir, fold, strict_tags), decoder)


def task_of(source: DataSource, decoder: str = "fishdip") -> Task:
    """The task over a resolved source of examples (a registry dataset, a user's files)."""
    get_decoder(decoder)
    return FAMILIES[source.family].load(source, decoder)


def task_from_metadata(meta: dict, decoder: str | None = None) -> Task:
    """The task a trained model was saved with; ``decoder`` overrides the one it was scored with."""
    decoder = decoder or meta.get("decoder", "fishdip")
    get_decoder(decoder)
    return FAMILIES[meta["family"]].from_metadata(meta, decoder)
