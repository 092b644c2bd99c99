"""Relation tails that name annotated spans: a rule on top of a copy grammar (formats/grammar.py).

A copy grammar lets a relation's tail be any run of input words. The decoder
(entity_relation.decode) looks a tail up among the output's entities by its text, and drops a
relation whose tail names none (``missing_tail``). ``AnnotatedTails`` answers, for an output
prefix the grammar allows, whether it can still end with every tail naming the text of some
bracket group, one written before the relation or one still to come. A tail written now can
oblige a group later (``[ John | person | work for = Acme ] works for [ Acme | organization ]``),
which no context-free grammar says, so this is no grammar for the engine: generation asks it about
the tokens the grammar allows (models/constrained.py) and takes the best one it accepts.

The answer is exact: a prefix is accepted iff some allowed completion satisfies every tail, found
by placing each unsatisfied tail on an occurrence of its text after the words copied so far, the
occurrences pairwise apart (groups do not nest). So generation never reaches a prefix with no
accepted continuation. Prefixes are bytes, as the engine's tokens are (a token may end inside a
character).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fishdip.formats.entity_relation import name_key
from fishdip.formats.tanl import CLOSE, EQUALS, OPEN, SEP

_OPEN, _SEP, _CLOSE, _EQUALS = (f"{OPEN} ".encode(), f" {SEP} ".encode(), f" {CLOSE}".encode(),
                                f" {EQUALS} ".encode())
_FINISHED = re.compile(rb"( #\d+)?")  # what a finished tail holds after its words: TANL's "#n", if any
_BEGUN = re.compile(rb"( #?| #\d+ ?)?")  # what a tail still being written may hold after its words


@dataclass
class _Prefix:
    """What an output prefix has committed to."""

    copied: int = 0  # input words begun (a word begun is written to its end)
    group: int | None = None  # where the open bracket group starts, if one is open
    fixed: bool = False  # the open group has reached its fields: its words are final
    annotated: set[str] = field(default_factory=set)  # the texts (name_key) of the groups written
    tails: list[frozenset[str]] = field(default_factory=list)  # per tail written: the texts it may name
    partial: bytes | None = None  # a tail being written


class AnnotatedTails:
    """The tail rule for one sentence: ``words`` as the grammar copies them (escaped), tails of at
    most ``longest_tail`` words."""

    def __init__(self, words: tuple[str, ...], longest_tail: int):
        self.words, self.longest_tail = words, longest_tail
        self._encoded = [w.encode() for w in words]
        self._spans: dict[str, list[tuple[int, int]]] = {}  # a tail's text -> where it occurs
        self._texts: dict[bytes, str] = {}  # every tail the grammar allows, unnumbered -> its text
        for a in range(len(words)):
            for b in range(a + 1, min(a + longest_tail, len(words)) + 1):
                text = " ".join(words[a:b])
                self._spans.setdefault(name_key(text), []).append((a, b))
                self._texts[text.encode()] = name_key(text)

    def accepts(self, prefix: bytes) -> bool:
        """Whether ``prefix`` (an output prefix the grammar allows) can still be completed with every
        relation tail naming a bracket group's text."""
        state = self._read(prefix)
        if state.partial is None:
            return self._completable(state, state.tails)
        return any(self._completable(state, [*state.tails, frozenset({text})])
                   for text in self._names(state.partial, finished=False))

    def _names(self, tail: bytes, finished: bool) -> set[str]:
        """The texts a tail names: a ``finished`` one its words (less its ``#n``); one still being
        written, any text it can still become."""
        after = _FINISHED if finished else _BEGUN
        return {text for written, text in self._texts.items()
                if (not finished and written.startswith(tail))
                or (tail.startswith(written) and after.fullmatch(tail[len(written):]))}

    def _completable(self, state: _Prefix, tails: list[frozenset[str]]) -> bool:
        """Whether groups still to come can satisfy every tail: the open group, while its words may
        still grow, ends at some word from here on; the others sit on later occurrences."""
        todo = [t for t in tails if not t & state.annotated]
        if state.group is None or state.fixed:
            return self._placed(todo, state.copied, ())
        for end in range(state.copied, len(self.words) + 1):
            text = name_key(" ".join(self.words[state.group:end]))
            if self._placed([t for t in todo if text not in t], end, ()):
                return True
        return False

    def _placed(self, todo: list[frozenset[str]], start: int, taken: tuple[tuple[int, int], ...]) -> bool:
        """Whether each tail in ``todo`` has an occurrence at or after word ``start``, apart from the
        others' (a few tails, a few occurrences each: a plain search)."""
        if not todo:
            return True
        for text in todo[0]:
            for a, b in self._spans.get(text, ()):
                if a >= start and all(b <= x or a >= y for x, y in taken):
                    if self._placed([t for t in todo[1:] if text not in t], start, (*taken, (a, b))):
                        return True
        return False

    def _read(self, prefix: bytes) -> _Prefix:
        """Walk ``prefix`` along the copy grammar's shape (it is one the grammar allows)."""
        words, state = self._encoded, _Prefix()
        pos = 1 if prefix.startswith(b" ") else 0  # a decoder-only model's first space
        while pos < len(prefix):
            k = state.copied
            if state.group is None:  # outside a group: the next word, or a group opening on it
                opening = prefix[pos:pos + 1] == _OPEN[:1]
                state.copied, state.group = k + 1, (k if opening else None)
                pos += (len(_OPEN) if opening else 0) + len(words[k])
                if not opening:
                    pos += 1  # the space before what follows
            elif not state.fixed:  # in a group's words: one more word, or its fields
                rest = prefix[pos:]
                if rest.startswith(_SEP) or rest == _SEP[:2]:
                    state.fixed = True
                    state.annotated.add(name_key(" ".join(self.words[state.group:k])))
                elif rest == b" ":
                    break  # a word or the fields: either may follow
                else:
                    state.copied = k + 1
                    pos += 1 + len(words[k])
            else:  # its fields: " | type", then " | relation = tail" ..., then " ]"
                end = prefix.find(_CLOSE, pos)
                fields = prefix[pos:] if end < 0 else prefix[pos:end]
                if end < 0 and fields.endswith(_SEP[:2]):
                    fields += b" "  # a relation begins
                parts = fields.split(_SEP)[2:]  # the relations, after the type
                done = parts if end >= 0 else parts[:-1]  # the last one may still be written
                state.tails += [frozenset(self._names(part.split(_EQUALS, 1)[1], finished=True)) for part in done]
                if end < 0:
                    if parts:  # a relation begun needs a tail it can name: "" until its tail begins
                        state.partial = parts[-1].split(_EQUALS, 1)[1] if _EQUALS in parts[-1] else b""
                    break
                state.group, state.fixed = None, False
                pos = end + len(_CLOSE) + 1  # and the space before the next word
        return state
