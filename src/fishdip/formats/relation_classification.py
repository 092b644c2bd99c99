"""Relation classification in TANL's format.

Input:  ``[ Cape Girardeau Bridge ] ... [ Mississippi River ] . The relationship between
[ Cape Girardeau Bridge ] and [ Mississippi River ] is``
Output: ``relationship between [ Cape Girardeau Bridge ] and [ Mississippi River ] = crosses``
"""

from __future__ import annotations

from collections import Counter

from fishdip.formats.entity_relation import escape
from fishdip.formats.tanl import CLOSE, OPEN
from fishdip.structures import RCDecoded, RCExample


def _span_text(ex: RCExample, span: tuple[int, int]) -> str:
    return " ".join(escape(t) for t in ex.tokens[span[0] : span[1]] if t.strip())


def source(ex: RCExample) -> str:
    marks = {ex.head[0]: OPEN, ex.tail[0]: OPEN}
    ends = {ex.head[1] - 1: CLOSE, ex.tail[1] - 1: CLOSE}
    words = []
    for i, token in enumerate(ex.tokens):
        if i in marks:
            words.append(marks[i])
        if token.strip():
            words.append(escape(token))
        if i in ends:
            words.append(ends[i])
    head, tail = _span_text(ex, ex.head), _span_text(ex, ex.tail)
    return (" ".join(words) + f" The relationship between {OPEN} {head} {CLOSE} and {OPEN} {tail} {CLOSE} is")


def target(ex: RCExample, relation_name: str) -> str:
    head, tail = _span_text(ex, ex.head), _span_text(ex, ex.tail)
    return f"relationship between {OPEN} {head} {CLOSE} and {OPEN} {tail} {CLOSE} = {relation_name}"


def decode(text: str, names: dict[str, str]) -> RCDecoded:
    """Read the relation after the last ``=``; unknown names are counted, never raised."""
    if "=" not in text:
        return RCDecoded(None, Counter(format_error=1))
    written = " ".join(text.rsplit("=", 1)[1].split()).lower()
    by_name = {name.lower(): key for key, name in names.items()}
    if written not in by_name:
        return RCDecoded(None, Counter(unknown_relation_type=1))
    return RCDecoded(by_name[written])
