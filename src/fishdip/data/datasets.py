"""Dataset registry: which files make up each dataset and how to read them."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fishdip.data.ace_events import read_event_types, read_events
from fishdip.data.columns import read_conll
from fishdip.data.dygie import ACE2005_SCHEMA, read_dygie
from fishdip.data.multiwoz import read_multiwoz
from fishdip.data.spert import read_spert, read_types
from fishdip.data.srl import read_srl
from fishdip.errors import DataError
from fishdip.formats.entity_relation import Example, Schema
from fishdip.paths import data_roots

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    family: str  # task family: selects format and metrics
    splits: dict[str, tuple[str, ...]]  # split -> candidate file names, first found wins; "{fold}" from --fold
    source: str  # where the public files come from
    reader: str = "spert"  # spert | columns | srl | dygie | ace_events | multiwoz | fewrel
    types_file: str | None = None  # spert: the *_types.json file
    scheme: str = "auto"  # conll: tagging scheme
    folds: int = 0  # >0: the dataset ships cross-validation folds 0..folds-1
    # conll datasets without an official split: one file, split by document with a fixed seed
    split_by_document: tuple[float, float, float] | None = None
    notes: str = ""
    aliases: dict[str, str] = field(default_factory=dict)
    # the published metric definition this dataset is scored with, and where it comes from
    metric: str = ""
    macro_average: bool = False  # also report P/R/F1 macro-averaged over types (ADE)

    def candidates(self, split: str, fold: int = 0) -> tuple[str, ...]:
        if split not in self.splits:
            raise DataError(f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)})")
        if self.folds and not 0 <= fold < self.folds:
            raise DataError(f"dataset {self.name}: fold {fold} does not exist (folds 0..{self.folds - 1})")
        return tuple(name.format(fold=fold) for name in self.splits[split])

    @property
    def markers(self) -> tuple[str, ...]:
        """Files whose presence identifies the dataset folder (any one of them)."""
        return (self.types_file,) if self.types_file else next(iter(self.splits.values()))


NER_METRIC = ("exact span and type, micro-averaged over entities (CoNLL-2003 conlleval = seqeval strict; "
              "TANL, CrossNER)")


def _column_ner(name: str, source: str, files=None, scheme="iob2", **kw) -> DatasetSpec:
    files = files or {s: (f"{s}.txt",) for s in SPLITS}
    return DatasetSpec(name=name, family="ner", splits=files, source=source, reader="columns", scheme=scheme,
                       metric=NER_METRIC, **kw)


CROSSNER_DOMAINS = ("ai", "literature", "music", "politics", "science")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="conll04", family="joint_er", types_file="conll04_types.json",
            splits={s: (f"conll04_{s}.json",) for s in SPLITS},
            source="SpERT release of CoNLL04 (Roth & Yih 2004), 922/231/288 sentences; `fishdip data fetch conll04`",
            metric="entity and relation F1, micro-averaged; a relation needs both entities' spans and types "
                   "(TANL, SpERT 'strict'); the no-type variants ignore entity types (SpERT's default)",
        ),
        DatasetSpec(
            name="ade", family="joint_er", types_file="ade_types.json", folds=10,
            splits={"train": ("ade_split_{fold}_train.json",), "test": ("ade_split_{fold}_test.json",)},
            source="SpERT release of ADE (Gurulingappa et al. 2012): 10 folds, no dev split",
            metric="entity and relation F1 macro-averaged over the types (SpERT, TANL: the literature's ADE "
                   "number, mean over the 10 folds); micro-averaged also reported",
            macro_average=True,
        ),
        DatasetSpec(
            name="ace2005_joint_er", family="joint_er", reader="dygie",
            splits={s: (f"{s}.json", f"ace2005_joint_er_{s}.json") for s in SPLITS},
            source="ACE2005 entities and relations (LDC2006T06, licensed), preprocessed with DyGIE's scripts "
                   "into one JSON document per line: TANL's ace2005_joint_er layout",
            notes="as in TANL, sentences without entities are left out; types use TANL's natural names",
            metric="entity and relation F1, micro-averaged; a relation needs both entities' spans and types "
                   "(TANL)",
        ),
        _column_ner("conll03", "CoNLL-2003 English NER (Reuters; license from NIST/Reuters, not redistributable)",
               files={"train": ("train.txt",), "dev": ("dev.txt", "valid.txt", "testa.txt"),
                      "test": ("test.txt", "testb.txt")}, scheme="auto"),
        _column_ner("ontonotes", "OntoNotes 5.0 NER in CoNLL columns (LDC2013T19, licensed)", scheme="auto"),
        _column_ner("wnut17", "WNUT-17 emerging entities (CC-BY 4.0), github.com/leondz/emerging_entities_17",
               files={"train": ("wnut17train.conll",), "dev": ("emerging.dev.conll",),
                      "test": ("emerging.test.annotated",)},
               notes="test = emerging.test.annotated (emerging.test.conll has comma-joined labels)"),
        *[_column_ner(f"crossner_{d}", f"CrossNER {d} domain (MIT), github.com/zliucr/CrossNER ner_data/{d}",
                 aliases={"folder": f"crossner/{d}"}) for d in CROSSNER_DOMAINS],
        _column_ner("wikigold", "wikigold (CC-BY 4.0): 145 Wikipedia articles, CoNLL-2003 types, IOB1",
               files={s: ("wikigold.conll.txt",) for s in SPLITS}, scheme="iob1",
               split_by_document=(0.7, 0.15, 0.15),
               notes="no official split: articles shuffled with seed 0, 70/15/15 % of articles"),
        DatasetSpec(
            name="fewrel", family="fewshot_rc", reader="fewrel", types_file="pid2name.json",
            splits={"train": ("train_wiki.json",), "dev": ("val_wiki.json",), "test": ("val_wiki.json",)},
            source="FewRel 1.0 (MIT), github.com/thunlp/FewRel data/: val_wiki.json, pid2name.json",
            notes="the FewRel test set was never released: test = val_wiki.json (16 relations x 700), "
                  "as in the literature; episodes: --n-way, --k-shot, --queries",
            metric="accuracy over the episode's queries, mean over episodes (Han et al. 2018); each candidate "
                   "relation is scored by the model's loss on its output (--rc-score; TANL: summed)",
        ),
        DatasetSpec(
            name="fewrel_pubmed", family="fewshot_rc", reader="fewrel", types_file="pid2name.json",
            splits={"dev": ("val_pubmed.json",), "test": ("val_pubmed.json",)}, aliases={"folder": "fewrel"},
            source="FewRel 2.0 domain adaptation set (MIT): val_pubmed.json, 10 relations x 100",
            metric="accuracy over the episode's queries, mean over episodes (Gao et al. 2019)",
        ),
        DatasetSpec(
            name="ace2005event", family="event", reader="ace_events", types_file="ace2005event_types.json",
            splits={s: (f"ace2005event_{s}.json",) for s in SPLITS},
            source="ACE2005 events (LDC2006T06, licensed) in TANL's JSON layout; also needs "
                   "ace2005event_schema.json (roles allowed per event type)",
            metric="trigger identification / classification F1 (span; span + type) and argument identification / "
                   "classification F1 (span + event type; + role), micro (Li et al. 2013); differs from TANL's "
                   "scorer, see docs/METRICS.md",
        ),
        DatasetSpec(
            name="multiwoz21", family="dst", reader="multiwoz",
            splits={s: (f"{s}_dials.json",) for s in SPLITS},
            source="MultiWOZ 2.1 preprocessed by TRADE (github.com/jasonwu0731/trade-dst): {train,dev,test}_dials.json",
            notes="low-resource options sample whole dialogues; metrics over TRADE's 30 slots",
            metric="joint goal accuracy and slot accuracy over TRADE's 30 slots, gold values with TRADE's label "
                   "fixes (Wu et al. 2019; TANL)",
        ),
        DatasetSpec(
            name="conll05", family="srl", reader="srl",
            splits={"train": ("train.txt",), "dev": ("dev.txt",), "test": ("test.txt", "test.wsj.txt")},
            source="CoNLL-2005 SRL (PropBank/WSJ, LDC-licensed): columns with bracketed propositions, or "
                   "the 'words ||| BIO tags' line format of He et al. 2017",
            metric="argument F1: exact span and label, micro over arguments, predicate excluded "
                   "(CoNLL-2005 srl-eval.pl without the verb; TANL)",
        ),
        DatasetSpec(
            name="conll12", family="srl", reader="srl",
            splits={s: (f"{s}.txt", f"{s}.gold_conll") for s in SPLITS},
            source="CoNLL-2012 SRL (OntoNotes 5.0, LDC-licensed): *_gold_conll columns or the line format",
            metric="argument F1: exact span and label, micro over arguments, predicate excluded "
                   "(CoNLL-2005 srl-eval.pl without the verb; TANL)",
        ),
        _column_ner("conll", "your own folder of CoNLL column files: train.txt, dev.txt, test.txt", scheme="auto",
               notes="types come from the data; any of IOB1/IOB2/IOBES/BILOU (detected)"),
    ]
}

# Natural-language names the model reads and writes for common NER type keys.
NATURAL_NAMES = {
    "per": "person", "loc": "location", "org": "organization", "misc": "miscellaneous",
    "gpe": "geopolitical entity", "norp": "nationality or religious or political group",
    "fac": "facility", "work_of_art": "work of art", "programlang": "programming language",
    "politicalparty": "political party", "musicalartist": "musical artist", "musicgenre": "music genre",
    "astronomicalobject": "astronomical object", "chemicalcompound": "chemical compound",
    "academicjournal": "academic journal", "literarygenre": "literary genre",
    "chemicalelement": "chemical element", "musicalinstrument": "musical instrument",
    "creative-work": "creative work",
}


def natural_name(key: str) -> str:
    low = key.lower()
    if low in NATURAL_NAMES:
        return NATURAL_NAMES[low]
    return re.sub(r"[-_]+", " ", low).strip()


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (see `fishdip tasks`)")
    return DATASETS[name]


def dataset_dir(spec: DatasetSpec, data_dir: Path | str | None = None) -> Path:
    """The first folder holding the dataset's marker file: ``<root>/<dataset>/`` (or the root itself
    for the generic ``conll`` task)."""
    roots = data_roots(data_dir)
    sub = spec.aliases.get("folder", spec.name)
    looked = []
    for root in roots:
        options = [root / spec.name, root / sub] + ([root] if spec.name == "conll" else [])
        for folder in options:
            looked.append(str(folder))
            if any((folder / marker).is_file() for marker in spec.markers):
                return folder
    raise DataError(
        f"dataset {spec.name}: {' or '.join(spec.markers)} not found (looked in {', '.join(dict.fromkeys(looked))}). "
        f"Pass --data-dir DIR (holding {sub}/), set FISHDIP_DATA_DIR"
        + (f", or run `fishdip data fetch {spec.name}`." if spec.name == "conll04" else ".")
    )


def find_file(spec: DatasetSpec, folder: Path, split: str, fold: int = 0) -> Path:
    names = spec.candidates(split, fold)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"dataset {spec.name}: no {split} file in {folder} (looked for {', '.join(names)})")


def _split_by_document(spec: DatasetSpec, split: str, examples: list[Example], documents: list[str]) -> list[Example]:
    """A dataset without an official split (wikigold): whole documents shuffled with a fixed seed, so
    no article spans two splits."""
    order = sorted(set(documents))
    random.Random(0).shuffle(order)
    cut1 = round(len(order) * spec.split_by_document[0])
    cut2 = cut1 + round(len(order) * spec.split_by_document[1])
    chosen = set({"train": order[:cut1], "dev": order[cut1:cut2], "test": order[cut2:]}[split])
    return [ex for ex, doc in zip(examples, documents) if doc in chosen]


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")


def srl_label_name(label: str) -> str:
    """ARG0 -> first argument, R-ARG1 -> reference to second argument; modifiers keep their label."""
    for prefix, words in (("R-", "reference to "), ("C-", "continuation of ")):
        if label.startswith(prefix):
            return words + srl_label_name(label[len(prefix):])
    match = re.fullmatch(r"ARG(\d)", label)
    if match and int(match.group(1)) < len(_ORDINALS):
        return f"{_ORDINALS[int(match.group(1))]} argument"
    return label.lower()


def _ner_schema(spec: DatasetSpec, folder: Path, read: Callable[[Path], list]) -> Schema:
    """NER types and SRL labels come from the data: every one in any split present, sorted."""
    paths = []
    for split in spec.splits:
        try:
            paths.append(find_file(spec, folder, split, 0))
        except DataError:
            continue
    # wikigold's three splits are one file: read each distinct file once
    types = {e.type for path in dict.fromkeys(paths) for ex in read(path) for e in ex.entities}
    if spec.reader == "srl":
        return Schema({t: srl_label_name(t) for t in sorted(types)})
    names = {t: natural_name(t) for t in sorted(types)}
    if len(set(names.values())) < len(names):  # two keys with one natural name: keep the keys
        names = {t: t.lower() for t in sorted(types)}
    return Schema(names)


def event_schemas(folder: Path):
    """Trigger schema, role schema and allowed roles of an ACE2005-style event folder."""
    return read_event_types(folder / "ace2005event_types.json", folder / "ace2005event_schema.json")


@dataclass(frozen=True)
class Reader:
    """One file format: how a dataset folder's schema (types) and one split's examples are read.
    A new format is a reading function in its own module plus one row of ``READERS``."""

    # (spec, folder, the dataset's cached reading of a file) -> types
    schema: Callable[[DatasetSpec, Path, Callable[[Path], list]], Schema]
    read: Callable[[DatasetSpec, Path, Schema, bool], list]  # (spec, split's file, schema, strict_tags)
    types_from_data: bool = False  # the schema is read from the examples (whose reading needs none)
    extra_files: tuple[str, ...] = ()  # read besides the splits and the types file (checksummed)


def _episodes_only(spec: DatasetSpec, *_) -> list:
    raise DataError(f"{spec.name} is read as N-way K-shot episodes, not as a split (see fishdip.data.fewrel)")


READERS: dict[str, Reader] = {
    "spert": Reader(lambda spec, folder, _: read_types(folder / spec.types_file),
                    lambda spec, path, schema, strict: read_spert(path, schema)),
    "dygie": Reader(lambda spec, folder, _: ACE2005_SCHEMA,
                    lambda spec, path, schema, strict: read_dygie(path, schema)),
    "columns": Reader(_ner_schema, lambda spec, path, schema, strict: read_conll(path, spec.scheme, strict).examples,
                      types_from_data=True),
    "srl": Reader(_ner_schema, lambda spec, path, schema, strict: read_srl(path), types_from_data=True),
    # slots are fixed by TRADE's ontology (formats/dst.py)
    "multiwoz": Reader(lambda spec, folder, _: Schema({}), lambda spec, path, schema, strict: read_multiwoz(path)),
    "ace_events": Reader(lambda spec, folder, _: event_schemas(folder)[0],
                         lambda spec, path, schema, strict: read_events(path, *event_schemas(path.parent)[:2]),
                         extra_files=("ace2005event_schema.json",)),
    "fewrel": Reader(lambda spec, folder, _: Schema({}), _episodes_only),  # episodes: data/fewrel.py
}


class DataSource(Protocol):
    """Where a task's examples come from: a registry ``Dataset``, or a user's own annotated files
    (data/annotations.py). A new source of examples offers these members and nothing else."""

    name: str
    family: str

    def schema(self) -> Schema: ...

    def split(self, split: str) -> list: ...

    def files(self, splits: list[str]) -> list[Path]: ...


@dataclass
class Dataset:
    """A dataset resolved once for a run: its registry row, the folder it lies in (looked up once),
    its schema and each split it reads (parsed once, then kept). Tasks read their examples from it;
    a new source of examples (data/annotations.py: a user's own files) offers the same members."""

    spec: DatasetSpec
    folder: Path
    fold: int = 0
    strict_tags: bool = False  # an invalid BIO/IOBES transition is an error instead of repaired
    _schema: Schema | None = field(default=None, repr=False)
    _files: dict[Path, list] = field(default_factory=dict, repr=False)  # each file's examples, parsed once
    _documents: dict[Path, list[str]] = field(default_factory=dict, repr=False)  # split_by_document: per example

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def family(self) -> str:
        return self.spec.family

    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = READERS[self.spec.reader].schema(self.spec, self.folder, self._read)
        return self._schema

    def _read(self, path: Path) -> list:
        """One file's examples, validated, parsed the first time they are asked for."""
        if path not in self._files:
            reader = READERS[self.spec.reader]
            if reader.read is _episodes_only:
                _episodes_only(self.spec)
            if self.spec.split_by_document is not None:  # the documents too: the splits are cut by them
                parsed = read_conll(path, self.spec.scheme, strict=self.strict_tags)
                self._files[path], self._documents[path] = parsed.examples, parsed.documents
            else:  # a reader whose types come from the data reads without them
                schema = Schema({}) if reader.types_from_data else self.schema()
                self._files[path] = reader.read(self.spec, path, schema, self.strict_tags)
        return self._files[path]

    def split(self, split: str) -> list:
        """The examples of one split, validated (a problem raises ``DataError`` naming file and line)."""
        path = find_file(self.spec, self.folder, split, self.fold)
        examples = self._read(path)
        if self.spec.split_by_document is not None:  # one file, split by document here
            return _split_by_document(self.spec, split, examples, self._documents[path])
        return examples

    def files(self, splits: list[str]) -> list[Path]:
        """The files a run that reads ``splits`` depends on (their checksums go into config.json)."""
        files = [self.folder / self.spec.types_file] if self.spec.types_file else []
        files += [self.folder / name for name in READERS[self.spec.reader].extra_files]
        return files + [find_file(self.spec, self.folder, s, self.fold) for s in dict.fromkeys(splits)]


def open_dataset(name: str, data_dir: Path | str | None = None, fold: int = 0, strict_tags: bool = False) -> Dataset:
    """Dataset ``name`` where ``data_dir`` (or the default places) holds it; nothing is parsed yet."""
    spec = get_spec(name)
    spec.candidates(next(iter(spec.splits)), fold)  # validates the fold before touching files
    return Dataset(spec, dataset_dir(spec, data_dir), fold, strict_tags)


def load_schema(name: str, data_dir: Path | str | None = None) -> Schema:
    return open_dataset(name, data_dir).schema()


def load_split(name: str, split: str, data_dir: Path | str | None = None, fold: int = 0,
               strict_tags: bool = False) -> tuple[list[Example], Schema]:
    """Read one split of a dataset, validated, with its schema (one-off reads; a run keeps a ``Dataset``).

    ``strict_tags``: an invalid BIO/IOBES transition in a CoNLL file is an error naming file and
    line, instead of being repaired the way conlleval does."""
    spec = get_spec(name)
    if READERS[spec.reader].read is _episodes_only:
        _episodes_only(spec)
    spec.candidates(split, fold)  # validates split and fold before touching files
    dataset = open_dataset(name, data_dir, fold, strict_tags)
    return dataset.split(split), dataset.schema()
