"""A user's own annotated sentences, from the tools people annotate with.

Three formats of character-offset spans (and relations between them):

- **doccano** (JSONL, one text per line): sequence labeling exports
  ``{"text": ..., "label": [[start, end, "TYPE"], ...]}`` (older versions: ``labels``), and relation
  exports ``{"text": ..., "entities": [{"id", "label", "start_offset", "end_offset"}],
  "relations": [{"id", "from_id", "to_id", "type"}]}``;
- **label-studio** (the JSON export: a list of tasks): ``data.text`` and the first annotation that was
  not cancelled, whose ``result`` holds ``labels`` results (``id``, ``value.start``, ``value.end``,
  ``value.labels``) and ``relation`` results (``from_id``, ``to_id``, ``labels``, ``direction``);
  tasks nobody annotated are left out;
- **jsonl** (fishdip's plain format): ``{"text": ..., "entities": [{"start", "end", "type"}],
  "relations": [{"head", "tail", "type"}]}``, head and tail indexing ``entities``.

Character offsets become tokens with the tokenizer ``predict`` uses for raw text (fishdip/text.py).
A span must start and end at token boundaries (whitespace at its edges is trimmed first); spans
may not overlap; a relation must join two spans of its text. Every problem is a ``DataError``
naming the file, the line (JSONL) or task (Label Studio) and the record.

``FileDataset`` is the source of a run on such files (``--train-file``, ``--eval-file``): the task
family follows from the data (relations present: joint entity-relation extraction, else NER), the
types from the data or ``--types-file``, and without ``--eval-file`` a seeded ``--dev-fraction`` of
the training file is held out for evaluation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from fishdip.data.datasets import natural_name
from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity, Example, Relation, Schema
from fishdip.text import tokenize

DATA_FORMATS = ("auto", "doccano", "label-studio", "jsonl")
FILE_TASK = "file"  # the task name of a run on a user's files


@dataclass
class Record:
    """One annotated text as an export has it: character spans and relations between them."""

    text: str
    where: str  # "FILE, line 3" or "FILE, task 2 (id 17)": for error messages
    id: str
    spans: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # key -> (start, end, type)
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # (head key, tail key, type)


def _fail(where: str, problem: str):
    raise DataError(f"{where}: {problem}")


def _int(where: str, value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"{what} {value!r} is not a whole number")
    return value


def _label(where: str, value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"{what} {value!r}: expected a non-empty label")
    return value.strip()


# -- the formats --------------------------------------------------------------------------------
def _jsonl_objects(path: Path) -> list[tuple[str, dict]]:
    out = []
    for number, line in enumerate(_text_of(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail(where, f"not JSON ({exc.msg}, column {exc.colno})")
        if not isinstance(obj, dict):
            _fail(where, "expected a JSON object per line")
        out.append((where, obj))
    return out


def _text_of(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror or exc}") from None


def _text(where: str, obj: dict, key: str = "text") -> str:
    text = obj.get(key)
    if not isinstance(text, str):
        _fail(where, f"no {key!r} string in the record")
    return text


def read_doccano(path: Path) -> list[Record]:
    records = []
    for where, obj in _jsonl_objects(path):
        rec = Record(_text(where, obj), where, str(obj.get("id", where)))
        if "entities" in obj:  # the relation extraction export
            for e in _list(where, obj, "entities"):
                key = str(e.get("id")) if isinstance(e, dict) else None
                if key is None or key in rec.spans:
                    _fail(where, f"entity {e!r}: needs an id of its own")
                rec.spans[key] = (_int(where, e.get("start_offset"), "start_offset"),
                                  _int(where, e.get("end_offset"), "end_offset"),
                                  _label(where, e.get("label"), "label"))
            for r in _list(where, obj, "relations"):
                if not isinstance(r, dict):
                    _fail(where, f"relation {r!r}: expected an object with from_id, to_id and type")
                rec.relations.append((str(r.get("from_id")), str(r.get("to_id")), _label(where, r.get("type"), "type")))
        else:  # the sequence labeling export: [start, end, label] triples
            key = "label" if "label" in obj else "labels"
            for i, triple in enumerate(_list(where, obj, key)):
                if not isinstance(triple, list) or len(triple) != 3:
                    _fail(where, f"{key}[{i}] {triple!r}: expected [start, end, label]")
                rec.spans[str(i)] = (_int(where, triple[0], "start"), _int(where, triple[1], "end"),
                                     _label(where, triple[2], "label"))
        records.append(rec)
    return records


def read_jsonl(path: Path) -> list[Record]:
    records = []
    for where, obj in _jsonl_objects(path):
        rec = Record(_text(where, obj), where, str(obj.get("id", where)))
        for i, e in enumerate(_list(where, obj, "entities")):
            if not isinstance(e, dict):
                _fail(where, f"entities[{i}] {e!r}: expected an object with start, end and type")
            rec.spans[str(i)] = (_int(where, e.get("start"), "start"), _int(where, e.get("end"), "end"),
                                 _label(where, e.get("type"), "type"))
        for r in _list(where, obj, "relations"):
            if not isinstance(r, dict):
                _fail(where, f"relation {r!r}: expected an object with head, tail and type")
            rec.relations.append((str(r.get("head")), str(r.get("tail")), _label(where, r.get("type"), "type")))
        records.append(rec)
    return records


def read_label_studio(path: Path) -> list[Record]:
    try:
        tasks = json.loads(_text_of(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(tasks, list):
        raise DataError(f"{path}: a Label Studio JSON export is a list of tasks")
    records = []
    for number, task in enumerate(tasks, start=1):
        where = f"{path}, task {number}" + (f" (id {task['id']})" if isinstance(task, dict) and "id" in task else "")
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            _fail(where, "expected an object with 'data'")
        done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:  # exported but never annotated: nothing to learn from
            continue
        rec = Record(_task_text(where, task["data"]), where, str(task.get("id", number)))
        for result in _list(where, done[0], "result"):
            kind = result.get("type") if isinstance(result, dict) else None
            if kind == "labels":
                value = result.get("value") or {}
                labels = value.get("labels") or []
                if len(labels) != 1:
                    _fail(where, f"span {value.get('text')!r}: {len(labels)} labels; one label per span")
                rec.spans[str(result.get("id"))] = (_int(where, value.get("start"), "start"),
                                                    _int(where, value.get("end"), "end"),
                                                    _label(where, labels[0], "label"))
            elif kind == "relation":
                labels = result.get("labels") or []
                if len(labels) != 1:
                    _fail(where, f"relation {result.get('from_id')} -> {result.get('to_id')}: {len(labels)} "
                                 "labels; give each relation one label")
                head, tail = str(result.get("from_id")), str(result.get("to_id"))
                direction = result.get("direction", "right")
                if direction == "bi":
                    _fail(where, f"relation {head} <-> {tail}: bidirectional; a relation has a head and a tail")
                if direction == "left":
                    head, tail = tail, head
                rec.relations.append((head, tail, _label(where, labels[0], "label")))
        records.append(rec)
    return records


def _task_text(where: str, data: dict) -> str:
    """A task's text: ``data.text``, or its one string field (a labeling config's ``value="$other"``)."""
    if "text" in data:
        return _text(where, data)
    strings = [k for k, v in data.items() if isinstance(v, str)]
    if len(strings) != 1:
        _fail(where, f"no 'text' in its data (fields: {', '.join(data) or 'none'})")
    return _text(where, data, strings[0])


def _list(where: str, obj: dict, key: str) -> list:
    value = obj.get(key, [])
    if not isinstance(value, list):
        _fail(where, f"{key!r} is not a list")
    return value


READERS = {"doccano": read_doccano, "label-studio": read_label_studio, "jsonl": read_jsonl}


def detect_format(path: Path) -> str:
    """The format of an export, from its first record: a JSON list (or a ``.json`` file) is Label
    Studio's export; a JSONL line with ``label``/``labels`` triples or ``start_offset`` entities is
    doccano's, with ``start`` entities fishdip's plain format."""
    text = _text_of(path).lstrip()
    if text.startswith("[") or path.suffix == ".json":
        return "label-studio"
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        if "label" in obj or "labels" in obj:
            return "doccano"
        entities = obj.get("entities")
        if isinstance(entities, list) and entities and isinstance(entities[0], dict):
            return "doccano" if "start_offset" in entities[0] else "jsonl"
        if "entities" in obj or "text" in obj:
            return "jsonl"
    raise DataError(f"{path}: cannot tell its format from the first record (a doccano or fishdip JSONL line, or a "
                    f"Label Studio JSON list); give --data-format ({', '.join(DATA_FORMATS[1:])})")


# -- records -> examples ------------------------------------------------------------------------
def to_example(rec: Record) -> Example:
    """Tokenize the text and turn character spans into token spans, checking each one."""
    if not rec.text.strip():
        _fail(rec.where, "empty text")
    tokens = tokenize(rec.text)
    starts = {t.start: i for i, t in enumerate(tokens)}
    ends = {t.end: i + 1 for i, t in enumerate(tokens)}
    entities: dict[str, Entity] = {}
    for key, (start, end, label) in rec.spans.items():
        if not 0 <= start < end <= len(rec.text):
            _fail(rec.where, f"span {start}-{end} ({label}) lies outside the text's {len(rec.text)} characters")
        piece = rec.text[start:end]
        start, end = start + len(piece) - len(piece.lstrip()), end - (len(piece) - len(piece.rstrip()))
        if start >= end:
            _fail(rec.where, f"span {start}-{end} ({label}) covers only whitespace")
        if start not in starts or end not in ends:
            words = " | ".join(t.text for t in tokens if t.end > start and t.start < end)
            _fail(rec.where, f"span {start}-{end} {rec.text[start:end]!r} ({label}) does not fall on token "
                             f"boundaries (the tokens there: {words}); fix the span or the text")
        entities[key] = Entity(starts[start], ends[end], label)
    ordered = sorted(entities.items(), key=lambda kv: (kv[1].start, kv[1].end))
    for (_, a), (_, b) in zip(ordered, ordered[1:]):
        if b.start < a.end:
            _fail(rec.where, f"spans {_show(rec, a)} and {_show(rec, b)} overlap; a sentence's spans may not "
                             "overlap or nest")
    relations = []
    for head, tail, label in rec.relations:
        missing = [k for k in (head, tail) if k not in entities]
        if missing:
            _fail(rec.where, f"relation {label} refers to span {missing[0]!r}, which the record does not have")
        relations.append(Relation(label, entities[head], entities[tail]))
    return Example([t.text for t in tokens], [e for _, e in ordered], relations, id=rec.id)


def _show(rec: Record, e: Entity) -> str:
    tokens = tokenize(rec.text)
    return f"{' '.join(t.text for t in tokens[e.start:e.end])!r} ({e.type})"


def read_annotated(path: Path, data_format: str = "auto") -> list[tuple[str, Example]]:
    """Every annotated record of an export as (where it is, example); a problem is a ``DataError``
    naming file and record."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = detect_format(path) if data_format == "auto" else data_format
    examples = [(rec.where, to_example(rec)) for rec in READERS[fmt](path)]
    if not examples:
        raise DataError(f"{path}: no annotated records")
    return examples


def read_types(path: Path) -> Schema:
    """``--types-file``: ``{"entities": [...], "relations": [...]}``, each a list of labels or an object
    label -> the natural name the model reads and writes."""
    try:
        data = json.loads(_text_of(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entities"), (list, dict)):
        raise DataError(f"{path}: expected {{\"entities\": [labels], \"relations\": [labels]}}")

    def names(value) -> dict[str, str]:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return {str(k): natural_name(str(k)) for k in value}

    return Schema(names(data["entities"]), names(data.get("relations", [])))


def schema_of(examples: list[Example]) -> Schema:
    """Types from the data: natural names of the labels (``PER`` -> person), the labels themselves
    (lowercased) when two would share a name."""
    def names(labels: set[str]) -> dict[str, str]:
        named = {t: natural_name(t) for t in sorted(labels)}
        if len(set(named.values())) < len(named):
            named = {t: t.lower() for t in sorted(labels)}
        return named

    return Schema(names({e.type for ex in examples for e in ex.entities}),
                  names({r.type for ex in examples for r in ex.relations}))


@dataclass
class FileDataset:
    """A run's examples from a user's files (data/datasets.py: ``DataSource``): ``train_file``, and
    ``eval_file`` or, without one, a seeded ``dev_fraction`` of the training file held out."""

    train_file: Path
    eval_file: Path | None = None
    data_format: str = "auto"
    dev_fraction: float = 0.2
    split_seed: int = 0
    types_file: Path | None = None
    name: str = FILE_TASK

    def __post_init__(self) -> None:
        self.train_file, self.eval_file = Path(self.train_file), self.eval_file and Path(self.eval_file)
        train = read_annotated(self.train_file, self.data_format)
        if self.eval_file is not None:
            self._train, self._eval = train, read_annotated(self.eval_file, self.data_format)
        else:
            held = max(1, round(self.dev_fraction * len(train)))
            if held >= len(train):
                raise DataError(f"{self.train_file}: {len(train)} annotated record(s); --dev-fraction "
                                f"{self.dev_fraction} would leave none to train on (give --eval-file)")
            order = list(range(len(train)))
            random.Random(self.split_seed).shuffle(order)
            kept = set(order[held:])
            self._train = [ex for i, ex in enumerate(train) if i in kept]
            self._eval = [ex for i, ex in enumerate(train) if i not in kept]
        everything = self._train + self._eval
        self._schema = read_types(Path(self.types_file)) if self.types_file else \
            schema_of([ex for _, ex in everything])
        for where, ex in everything:  # a types file names every type the data uses
            for kind, types, used in (("entity", self._schema.entity_types, ex.entities),
                                      ("relation", self._schema.relation_types, ex.relations)):
                unknown = sorted({x.type for x in used} - set(types))
                if unknown:
                    raise DataError(f"{where}: {kind} type {unknown[0]!r} is not in {self.types_file}")
        self._train, self._eval = [ex for _, ex in self._train], [ex for _, ex in self._eval]
        self.family = "joint_er" if self._schema.relation_types else "ner"

    def schema(self) -> Schema:
        return self._schema

    def split(self, split: str) -> list[Example]:
        """``train``: the training part; ``dev`` and ``test``: the evaluation file or the held-out part."""
        return self._train if split == "train" else self._eval

    def files(self, splits: list[str]) -> list[Path]:
        return [p for p in (self.train_file, self.eval_file, self.types_file) if p is not None]
