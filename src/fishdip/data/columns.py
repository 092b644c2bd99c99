"""CoNLL-style column files for NER: token in the first column, tag in the last.

Sentences end at blank lines and ``-DOCSTART-`` lines; columns are tab- or
space-separated. Tagging schemes IOB1, IOB2 (BIO), IOBES and BILOU become
``Entity`` spans. In strict mode an invalid transition (``O`` -> ``I-PER`` in
IOB2, ``B-PER`` -> ``O`` in IOBES, ...) is an error naming the file and line;
otherwise it is repaired the way conlleval does (the tag starts a new entity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity, Example

SCHEMES = ("iob1", "iob2", "iobes", "bilou", "auto")
# BILOU is IOBES with other letters
_BILOU_TO_IOBES = {"U": "S", "L": "E", "B": "B", "I": "I", "O": "O"}


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    lines: list[int]  # 1-based line number of each token
    document: int  # index of the -DOCSTART- document it belongs to


def read_columns(path: Path) -> list[Sentence]:
    """Split a column file into sentences (no tag interpretation yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first token
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    sentences: list[Sentence] = []
    current = Sentence([], [], [], 0)
    document = 0

    def flush() -> None:
        nonlocal current
        if current.tokens:
            sentences.append(current)
        current = Sentence([], [], [], document)

    for number, line in enumerate(text.splitlines(), start=1):
        if "\x00" in line:  # a binary file, or a text file damaged in transfer: never a token
            raise DataError(f"{path}: line {number}: a NUL byte (column {line.index(chr(0)) + 1}); "
                            "is this a text file?")
        if not line.strip():
            flush()
            continue
        # tabs, spaces or a mix of both separate columns; a token never contains either
        columns = [c for c in re.split(r"[ \t]+", line.strip(" \t\r")) if c]
        if columns[0] == "-DOCSTART-":
            flush()
            document += 1
            current.document = document
            continue
        if len(columns) < 2 or not columns[0] or not columns[-1]:
            raise DataError(f"{path}: line {number}: expected 'token ... tag', got {line!r}")
        current.tokens.append(columns[0])
        current.tags.append(columns[-1])
        current.lines.append(number)
    flush()
    if not sentences:
        raise DataError(f"{path}: empty file (no sentences)")
    return sentences


def _split_tag(tag: str, where: str) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if not sep or not label or prefix not in ("B", "I", "E", "S", "L", "U"):
        raise DataError(f"{where}: invalid tag {tag!r} (expected O or B-/I-/E-/S-/L-/U-<type>)")
    return prefix, label


def detect_scheme(sentences: list[Sentence]) -> str:
    """Guess the tagging scheme from the prefixes used in a file."""
    prefixes = {t.split("-", 1)[0] for s in sentences for t in s.tags if t != "O"}
    if prefixes & {"U", "L"}:
        return "bilou"
    if prefixes & {"S", "E"}:
        return "iobes"
    # IOB1 uses B- only right after an entity of the same type; IOB2 starts every entity with B-
    b_start = i_start = False
    for s in sentences:
        previous = "O"
        for tag in s.tags:
            if tag[:2] in ("B-", "I-") and previous[2:] != tag[2:]:
                b_start |= tag.startswith("B-")
                i_start |= tag.startswith("I-")
            previous = tag
    return "iob1" if i_start and not b_start else "iob2"


def tags_to_entities(tags: list[str], scheme: str, strict: bool = False,
                     where: list[str] | None = None) -> list[Entity]:
    """Convert one sentence's tags to spans. ``where[i]`` names token i's file and line for errors."""
    if scheme not in SCHEMES or scheme == "auto":
        raise ValueError(f"scheme must be one of iob1, iob2, iobes, bilou, got {scheme!r}")
    where = where or [f"token {i}" for i in range(len(tags))]
    entities: list[Entity] = []
    start, label = None, None  # the entity being built

    def close(end: int) -> None:
        nonlocal start, label
        if start is not None:
            entities.append(Entity(start, end, label))
        start, label = None, None

    previous = "O"
    for i, tag in enumerate(tags):
        prefix, lab = _split_tag(tag, where[i])
        if scheme == "bilou":
            prefix = _BILOU_TO_IOBES[prefix]
        elif scheme in ("iob1", "iob2") and prefix in ("E", "S"):
            raise DataError(f"{where[i]}: tag {tag!r} does not belong to {scheme.upper()}")
        inside = start is not None and lab == label
        if prefix == "O":
            if strict and scheme in ("iobes", "bilou") and start is not None:
                raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} ({scheme.upper()}: "
                                f"an entity must close with E-/L-)")
            close(i)
        elif prefix == "B":
            if strict and scheme in ("iobes", "bilou") and start is not None:
                raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} ({scheme.upper()})")
            if strict and scheme == "iob1" and not inside:
                raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} "
                                f"(IOB1 uses B- only right after an entity of the same type)")
            close(i)
            start, label = i, lab
        elif prefix == "I":
            if not inside:
                if strict and scheme != "iob1":
                    raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} ({scheme.upper()})")
                close(i)
                start, label = i, lab
        elif prefix in ("E", "S"):
            if prefix == "E" and not inside and strict:
                raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} ({scheme.upper()})")
            if prefix == "S" or not inside:
                if prefix == "S" and strict and start is not None:
                    raise DataError(f"{where[i]}: invalid transition {previous} -> {tag} ({scheme.upper()})")
                close(i)
                start, label = i, lab
            close(i + 1)
        previous = tag
    if strict and scheme in ("iobes", "bilou") and start is not None:
        raise DataError(f"{where[-1]}: entity not closed at the end of the sentence ({scheme.upper()})")
    close(len(tags))
    return entities


def entities_to_iob2(entities: list[Entity], length: int) -> list[str]:
    """The inverse, for metrics cross-checks and writing files."""
    tags = ["O"] * length
    for e in entities:
        tags[e.start] = f"B-{e.type}"
        for i in range(e.start + 1, e.end):
            tags[i] = f"I-{e.type}"
    return tags


@dataclass
class ConllFile:
    examples: list[Example]
    scheme: str  # the scheme used (detected when "auto" was asked for)
    documents: list[int]  # document index of each example (-DOCSTART- count)


def read_conll(path: Path, scheme: str = "auto", strict: bool = False) -> ConllFile:
    """Read a column file into examples with entity spans."""
    sentences = read_columns(path)
    if scheme == "auto":
        scheme = detect_scheme(sentences)
    examples = []
    for s in sentences:
        where = [f"{path}: line {line}" for line in s.lines]
        entities = tags_to_entities(s.tags, scheme, strict, where)
        examples.append(Example(s.tokens, entities, [], id=f"{Path(path).name}:{s.lines[0]}"))
    return ConllFile(examples, scheme, [s.document for s in sentences])
