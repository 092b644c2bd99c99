"""Semantic role labeling files: one example per predicate.

Two layouts are read:
- the line format of He et al. (2017): ``[predicate index] w1 w2 ... ||| tag1 tag2 ...`` with BIO
  tags, the predicate tagged ``B-V`` (the leading index is optional);
- CoNLL columns with bracketed proposition columns (``(A0*``, ``*``, ``*)``, ``(V*)``):
  CoNLL-2005 (word first, then the predicate column holding a lemma or ``-``, then one column
  per predicate) and CoNLL-2012 ``*_conll`` files (word in column 4, frameset in column 8,
  propositions from column 12, coreference last).
Labels are normalised to the CoNLL-2012 spelling: ``A0`` -> ``ARG0``, ``AM-TMP`` -> ``ARGM-TMP``.
"""

from __future__ import annotations

import re
from pathlib import Path

from fishdip.data.columns import tags_to_entities
from fishdip.errors import DataError
from fishdip.formats.entity_relation import Entity
from fishdip.structures import SRLExample


def normalize_label(label: str) -> str:
    label = re.sub(r"(^|-)A(\d|A)$", r"\1ARG\2", label)
    return re.sub(r"(^|-)AM-", r"\1ARGM-", label)


def _read_lines(path: Path) -> list[SRLExample]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        if "|||" not in line:
            raise DataError(f"{where}: expected 'words ||| tags'")
        left, right = line.split("|||", 1)
        words, tags = left.split(), right.split()
        predicate = None
        if words and words[0].isdigit() and len(words) == len(tags) + 1:
            predicate, words = int(words[0]), words[1:]
        if len(words) != len(tags):
            raise DataError(f"{where}: {len(words)} words but {len(tags)} tags")
        spans = tags_to_entities(tags, "iob2", strict=False, where=[where] * len(tags))
        verbs = [s for s in spans if s.type == "V"]
        if predicate is None:
            if not verbs:
                raise DataError(f"{where}: no predicate (no B-V tag and no leading index)")
            predicate = verbs[0].start
        if not 0 <= predicate < len(words):
            raise DataError(f"{where}: predicate index {predicate} outside the {len(words)} words")
        args = [Entity(s.start, s.end, normalize_label(s.type)) for s in spans if s.type != "V"]
        examples.append(SRLExample(words, args, id=f"{path.name}:{number}", predicate=predicate))
    return examples


def _parse_props(column: list[str], where: list[str]) -> list[Entity]:
    spans, open_label, start = [], None, 0
    for i, cell in enumerate(column):
        match = re.fullmatch(r"(?:\(([^*()]+))?\*+(\))?", cell)
        if not match:
            raise DataError(f"{where[i]}: bad proposition cell {cell!r} (expected like '(ARG0*', '*', '*)')")
        label, closes = match.group(1), match.group(2)
        if label:
            if open_label is not None:
                raise DataError(f"{where[i]}: argument {label} opens inside {open_label}")
            open_label, start = label, i
        if closes:
            if open_label is None:
                raise DataError(f"{where[i]}: ')' closes no argument")
            spans.append(Entity(start, i + 1, normalize_label(open_label)))
            open_label = None
    if open_label is not None:
        raise DataError(f"{where[-1]}: argument {open_label} never closed")
    return spans


def _column_sentences(path: Path):
    rows, lines = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if rows:
                yield rows, lines
            rows, lines = [], []
            continue
        rows.append(line.split())
        lines.append(number)
    if rows:
        yield rows, lines


def _read_columns(path: Path) -> list[SRLExample]:
    examples = []
    for rows, lines in _column_sentences(path):
        where = [f"{path}: line {n}" for n in lines]
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            bad = next(i for i, r in enumerate(rows) if len(r) != width)
            raise DataError(f"{where[bad]}: {len(rows[bad])} columns, the sentence started with {width}")
        conll2012 = width >= 12 and rows[0][2].isdigit()
        if conll2012:
            words = [r[3] for r in rows]
            predicates = [i for i, r in enumerate(rows) if r[7] != "-"]
            props = list(range(11, width - 1))
        else:
            words = [r[0] for r in rows]
            predicates, props = None, []
            for c in range(1, width):  # the predicate column is followed by exactly one column each
                marked = [i for i, r in enumerate(rows) if r[c] != "-"]
                if width - c - 1 == len(marked):
                    predicates, props = marked, list(range(c + 1, width))
            if predicates is None:
                raise DataError(f"{where[0]}: cannot find the predicate column (a column with one "
                                "non-'-' entry per proposition column after it)")
        if len(predicates) != len(props):
            raise DataError(f"{where[0]}: {len(predicates)} predicates but {len(props)} proposition columns")
        for predicate, c in zip(predicates, props):
            spans = _parse_props([r[c] for r in rows], where)
            args = [s for s in spans if s.type != "V"]
            examples.append(SRLExample(words, args, id=f"{path.name}:{lines[0]}:{predicate}", predicate=predicate))
    return examples


def read_srl(path: Path) -> list[SRLExample]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    first = next((line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: empty file (no sentences)")
    return _read_lines(path) if "|||" in first else _read_columns(path)
