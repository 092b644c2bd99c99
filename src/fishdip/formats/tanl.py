"""Parse TANL's augmented natural language: ``text [ span | tag | key = value ] text``.

The parser is shared by every task format. It never raises: anything it cannot
read is counted in ``errors`` and the rest of the string is still used.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OPEN, CLOSE, SEP, EQUALS = "[", "]", "|", "="


@dataclass
class Bracket:
    """One annotated span: its text, its position in the plain text, and its fields."""

    text: str
    start: int  # character offsets into ParsedText.plain
    end: int
    fields: list[str]  # everything after the first "|", stripped


@dataclass
class ParsedText:
    plain: str  # the output with annotations removed: what the model copied
    brackets: list[Bracket]
    errors: Counter = field(default_factory=Counter)


def parse(text: str) -> ParsedText:
    """Split augmented text into plain text and annotated spans."""
    plain: list[str] = []
    brackets: list[Bracket] = []
    errors: Counter = Counter()
    length = 0  # len("".join(plain)), kept incrementally

    def emit(chunk: str) -> None:
        nonlocal length
        chunk = " ".join(chunk.split())
        if not chunk:
            return
        if plain:
            plain.append(" ")
            length += 1
        plain.append(chunk)
        length += len(chunk)

    pos = 0
    while pos < len(text):
        open_at = text.find(OPEN, pos)
        close_at = text.find(CLOSE, pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            errors["format_error"] += 1  # a "]" with no "[" before it
            emit(text[pos:close_at])
            pos = close_at + 1
            continue
        if open_at == -1:
            emit(text[pos:])
            break
        emit(text[pos:open_at])
        close_at = text.find(CLOSE, open_at + 1)
        nested = text.find(OPEN, open_at + 1)
        if close_at == -1 or (nested != -1 and nested < close_at):
            # unbalanced: keep the copied words, drop the annotation
            errors["format_error"] += 1
            stop = len(text) if close_at == -1 else nested
            inner = text[open_at + 1 : stop]
            emit(inner.split(SEP)[0])
            pos = stop
            continue
        inner = text[open_at + 1 : close_at]
        span_text, *fields = inner.split(SEP)
        span_text = " ".join(span_text.split())
        if not span_text:
            errors["format_error"] += 1
        else:
            emit(span_text)
            brackets.append(
                Bracket(span_text, length - len(span_text), length, [f.strip() for f in fields])
            )
        pos = close_at + 1
    return ParsedText("".join(plain), brackets, errors)
