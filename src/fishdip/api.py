"""The Python API: the same runs as the CLI, from a notebook or a script.

    import fishdip

    result = fishdip.train(task="conll04", method=["full", "fish-dip"], train_size=48, epochs=8,
                           data_dir="../shared/data", output_dir="runs/notebook")
    result.metrics["fish-dip"]["entity_f1"]          # mean over episodes
    predictor = fishdip.load(result.model_dir("fish-dip"))
    predictor.predict("Lee Harvey Oswald shot John F. Kennedy in Dallas .")

``train`` takes every option of ``fishdip train`` by its field name (``fishdip train --help``;
``training/config.py``, ``runs/config.py``), in-memory examples instead of a dataset, and a model already in memory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from fishdip.errors import FishdipError
from fishdip.formats import entity_relation as er
from fishdip.models.loading import LoadedModel, load_model, prepare, read_fishdip_metadata
from fishdip.runs.config import configs_from_options
from fishdip.runs.experiment import Comparison, run_comparison
from fishdip.runs.rundir import model_folder
from fishdip.tasks import JointERTask, Task, load_task, task_from_metadata
from fishdip.tasks.options import DataOptions, GenerationOptions
from fishdip.text import tokenize


def _model_pair(model: tuple):
    """``(model, tokenizer)``: a transformers model and its tokenizer, checked before anything uses them."""
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    if len(model) != 2 or not isinstance(model[0], PreTrainedModel) or \
            not isinstance(model[1], PreTrainedTokenizerBase):
        kinds = ", ".join(type(m).__name__ for m in model)
        raise FishdipError(f"model=({kinds}): expected (a transformers model, its tokenizer), e.g. "
                           "(AutoModelForSeq2SeqLM.from_pretrained(name), AutoTokenizer.from_pretrained(name))")
    return model


def _example(item, where: str) -> er.Example:
    """An ``er.Example`` or ``{"tokens": [...], "entities": [{"start", "end", "type"}],
    "relations": [{"type", "head", "tail"}]}`` (head / tail: indices into entities)."""
    if isinstance(item, er.Example):
        return item
    try:
        if isinstance(item["tokens"], str):  # list("John lives") would make every character a token
            raise FishdipError(f"{where}: 'tokens' is a string; give a list of tokens (\"John lives\".split())")
        tokens = [str(t) for t in item["tokens"]]
        entities = [er.Entity(int(e["start"]), int(e["end"]), str(e["type"])) for e in item.get("entities", [])]
        relations = [er.Relation(str(r["type"]), entities[int(r["head"])], entities[int(r["tail"])])
                     for r in item.get("relations", [])]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FishdipError(f"{where}: expected {{'tokens', 'entities', 'relations'}} ({exc})") from None
    for e in entities:
        if not 0 <= e.start < e.end <= len(tokens):
            raise FishdipError(f"{where}: entity span [{e.start}, {e.end}) outside the {len(tokens)} tokens")
    return er.Example(tokens, entities, relations, id=str(item.get("id", where)))


@dataclass
class ExamplesTask(JointERTask):
    """A joint ER (or NER, without relations) task over examples held in memory."""

    train_data: list = None  # type: ignore[assignment]
    eval_data: list = None  # type: ignore[assignment]

    def splits(self, data: DataOptions) -> tuple[list, list]:
        evaluation = self.eval_data[: data.eval_limit] if data.eval_limit else self.eval_data
        return self.train_data, evaluation

    def curve_examples(self, data: DataOptions) -> list:
        return self.eval_data[: data.curve_limit]


def examples_task(train_examples: list, eval_examples: list, decoder: str = "fishdip") -> ExamplesTask:
    train_data = [_example(x, f"examples[{i}]") for i, x in enumerate(train_examples)]
    eval_data = [_example(x, f"eval_examples[{i}]") for i, x in enumerate(eval_examples)]
    if not train_data or not eval_data:
        raise FishdipError("examples and eval_examples must both be non-empty")
    data = train_data + eval_data
    entity_types = sorted({e.type for ex in data for e in ex.entities})
    relation_types = sorted({r.type for ex in data for r in ex.relations})
    schema = er.Schema({t: t.lower().replace("_", " ") for t in entity_types},
                       {t: t.lower().replace("_", " ") for t in relation_types})
    family = "joint_er" if relation_types else "ner"
    return ExamplesTask("in-memory", family, decoder=decoder, schema=schema, train_data=train_data,
                        eval_data=eval_data)


def train(*, examples: list | None = None, eval_examples: list | None = None,
          model: str | LoadedModel | tuple = "embedded", overwrite: bool = False, progress: bool = True,
          log=print, **options) -> Comparison:
    """Fine-tune and evaluate, as ``fishdip train`` does; returns the metrics and the output folder.

    ``examples`` / ``eval_examples``: in-memory training and evaluation examples (dicts or
    ``er.Example``) instead of a dataset; ``model``: a name, a path, a ``LoadedModel`` or a
    ``(model, tokenizer)`` pair already in memory (each episode starts from a copy of it).
    ``method``: one method or a list. Other keywords: the options of ``fishdip train``.
    """
    task: Task | None = None
    if examples is not None:
        if eval_examples is None:
            raise FishdipError("with examples=, also pass eval_examples=")
        options["task"] = "in-memory"
        task = examples_task(examples, eval_examples, options.get("decoder", "fishdip"))
    base = None
    if isinstance(model, tuple):
        base = prepare(*_model_pair(model), type(model[0]).__name__)
    elif isinstance(model, LoadedModel):
        base = model
    options["model"] = base.name if base is not None else model
    cfg, methods = configs_from_options(options)
    fresh = (lambda: copy.deepcopy(base)) if base is not None else None
    from fishdip.training.distributed import setup

    # under torchrun / accelerate launch every process calls train(); the main one writes (distributed.py)
    return run_comparison(cfg, methods, overwrite=overwrite, progress=progress, log=log, task=task,
                          fresh_model=fresh, dist=setup(cfg.device))


class Predictor:
    """A trained model and its task: annotate text, or score a dataset split."""

    def __init__(self, loaded: LoadedModel, task: Task, max_length: int = 256):
        self.loaded, self.task, self.max_length = loaded, task, max_length

    def predict(self, texts, batch_size: int = 64, decoding: str = "auto", copy_ahead: int = 0) -> list[dict]:
        """Annotate raw sentences (a string or a list of strings, tokenized the way the training
        corpora are) or pre-tokenized ones (a list of token lists). Each result has the tokens,
        the generated text, and every entity (and relation) with its token span and, for raw
        text, its character offsets in the input. ``decoding``: the options' ``--decoding`` (``auto``, the
        default: annotated-tails, every output a valid annotation of its sentence whose relations all find
        their tails; ``free``: TANL's);
        ``copy_ahead``: ``--copy-ahead``."""
        from fishdip.evaluation.predict import predict

        # one clear line, not an error from range()
        options = GenerationOptions(batch_size=batch_size, decoding=decoding, copy_ahead=copy_ahead)
        if self.task.family not in ("joint_er", "ner"):
            raise FishdipError(f"predict annotates sentences for entity tasks (joint_er, ner); this model was "
                               f"trained for {self.task.family}: use evaluate()")
        if isinstance(texts, str):
            texts = [texts]
        inputs = []
        for item in texts:
            if isinstance(item, str):
                tokens = tokenize(item)
                inputs.append((item, [t.text for t in tokens], [(t.start, t.end) for t in tokens]))
            else:
                inputs.append((None, [str(t) for t in item], None))
        examples = [er.Example(tokens) for _, tokens, _ in inputs]
        generated, decoded = predict(self.loaded, self.task, examples, batch_size, self.max_length, progress=False,
                                     decoding=self.task.decoding(options), copy_ahead=copy_ahead)
        out = []
        for (text, tokens, offsets), gen, pred in zip(inputs, generated, decoded):
            structures = self.task.to_json(tokens, pred.entities, pred.relations)
            if offsets is not None:
                for entity in structures["entities"] + [x for r in structures.get("relations", [])
                                                        for x in (r["head"], r["tail"])]:
                    entity["char_start"] = offsets[entity["start"]][0]
                    entity["char_end"] = offsets[entity["end"] - 1][1]
                    entity["text"] = text[entity["char_start"]:entity["char_end"]]
            out.append({"input": text if text is not None else tokens, "tokens": tokens, "generated": gen,
                        **structures, "errors": dict(pred.errors)})
        return out

    def evaluate(self, split: str = "test", data_dir: str | None = None, examples: list | None = None,
                 limit: int | None = None, batch_size: int = 64, num_beams: int = 1, fold: int = 0,
                 progress: bool = False, eval_file: str | Path | None = None, data_format: str = "auto",
                 decoding: str = "auto", copy_ahead: int = 0) -> dict:
        """Metrics on a split of the task's dataset (``fold``: of a dataset that ships folds), on
        in-memory ``examples``, or on an annotated file (``eval_file``: a doccano / Label Studio export
        or fishdip JSONL, data/annotations.py); the first ``limit`` only, if given."""
        from fishdip.data.annotations import read_annotated
        from fishdip.data.datasets import load_split

        data = DataOptions(data_dir=data_dir, fold=fold, eval_split=split, eval_limit=limit)  # checks the values
        gen = GenerationOptions(batch_size=batch_size, max_length=self.max_length, num_beams=num_beams,
                                decoding=decoding, copy_ahead=copy_ahead)
        if examples is not None:
            gold = [_example(x, f"examples[{i}]") for i, x in enumerate(examples)]
        elif eval_file is not None:
            gold = [ex for _, ex in read_annotated(Path(eval_file), data_format)]
        else:
            gold, _ = load_split(self.task.dataset, data.eval_split, data.data_dir, data.fold)
        gold = gold[: data.eval_limit] if data.eval_limit else gold
        _, decoded = self.task.predict(self.loaded, gold, gen, progress=progress)  # events chain two passes
        return self.task.score(gold, decoded)


def load(path: str | Path, decoder: str | None = None, task: str | None = None,
         data_dir: str | None = None, device: str = "auto") -> Predictor:
    """A predictor from a model folder written by ``train`` (``models/episode-<i>``), or from a run
    folder (its first episode's model). ``task``: any model (a hub name or model folder) with the task
    it is to be scored on (its schema read from ``data_dir``); ``decoder``: fishdip or tanl (default:
    the one the model was trained with); ``device``: auto (a GPU if there is one), cpu, cuda, cuda:1 ..."""
    from fishdip.runs.config import check_device
    from fishdip.training.distributed import pick_device

    check_device("device", device)
    if task is not None:
        meta = read_fishdip_metadata(str(path)) or {}
        loaded, task_ = load_model(str(path)), load_task(task, data_dir, decoder or "fishdip")
    else:
        try:
            folder = model_folder(Path(path))
        except FishdipError as exc:
            raise FishdipError(f"{exc}; a model fishdip did not train needs its task (task=, --task)") from None
        meta = read_fishdip_metadata(str(folder))
        loaded, task_ = load_model(str(folder)), task_from_metadata(meta, decoder)
    loaded.model.to(pick_device(device))
    return Predictor(loaded, task_, meta.get("max_length", 256))
