"""The outputs a copy family may write, as a grammar: every valid annotation of one input and nothing else.

Entity, NER, SRL and event outputs copy their input and annotate it (entity_relation.encode):
``[ John Smith | person | work for = Acme Corp ] works for [ Acme Corp | organization ] .``
``copy_grammar`` writes the language of such outputs for one sentence in llguidance's Lark
syntax: the input's words in order, each copied exactly once; bracket groups around contiguous
runs of them, not nested; a type from the schema after each group's words; up to
``max_relations`` relations per group, each a relation name from the schema and a tail that is a
contiguous run of at most ``longest_tail`` input words (with TANL's ``#n`` when the same text
occurs twice); then the end. Any tokenization of an allowed text is allowed (the engine works on
bytes). ``max_bytes`` bounds the longest allowed output, so a token budget of that many tokens
(every token is at least one byte) never cuts an allowed output short.

The grammar is linear in the sentence: one rule per position outside a group (``c``: the next
word, or a group opening on it), one inside a group (``b``: one more word, or the group's
fields and its end), and the tails (``w``: one chain of words when any length is allowed, else
``longest_tail`` rules per start).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from fishdip.formats.tails import AnnotatedTails
from fishdip.formats.tanl import CLOSE, OPEN, SEP

MAX_ORDINAL = 9  # "#n" after a tail: the n-th of several spans with the same text


@dataclass(frozen=True)
class Grammar:
    lark: str  # llguidance Lark: every output allowed (before the end-of-sequence token)
    max_bytes: int  # an upper bound of the longest allowed output, in UTF-8 bytes
    groups: bool = True  # outputs open bracket groups on input words (decoding own-brackets applies)
    tails: AnnotatedTails | None = None  # outputs with relations: the rule that their tails name groups


@dataclass(frozen=True)
class Rules:
    """What a constrained decoding adds to its grammars (models/constrained.py applies them)."""

    own_brackets: bool = False  # a refused top token: the best allowed one that opens no group
    annotated_tails: bool = False  # a relation's tail names one of the output's groups (formats/tails.py)


# the constrained decodings (--decoding, beside "free") and what each adds to the grammars
DECODING_RULES = {"constrained": Rules(), "own-brackets": Rules(own_brackets=True),
                  "annotated-tails": Rules(own_brackets=True, annotated_tails=True)}


def decoding_rules(decoding: str) -> Rules:
    """The rules of a ``--decoding`` (free decoding has no grammar: no rules)."""
    return DECODING_RULES.get(decoding, Rules())


def literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a Lark string literal (quotes, backslashes escaped)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def copy_grammar(words: list[str], types: list[str], relations: list[str] = (), max_relations: int = 4,
                 longest_tail: int | None = None) -> Grammar:
    """The annotated copies of ``words`` (already escaped: entity_relation.escape) with entity
    ``types`` and ``relations`` (the natural names the model writes)."""
    if not words:
        return Grammar('start: ""\n', 0)
    if not types:
        raise ValueError("a copy grammar needs at least one type")
    n = len(words)
    longest_tail = min(longest_tail or n, n)
    max_relations = max_relations if relations else 0
    rules = ['start: " "? c0']  # a decoder-only model writes " " first; SentencePiece folds it in
    for i, word in enumerate(words):
        rules.append(f"c{i}: {literal(word)} t{i + 1} | {literal(f'{OPEN} {word}')} b{i + 1}")
    rules += [f't{k}: " " c{k}' for k in range(n)] + [f't{n}: ""']
    fields = f'{literal(f" {SEP} ")} type rels {literal(f" {CLOSE}")}'
    for k in range(n + 1):
        more = f"{literal(' ' + words[k])} b{k + 1} | " if k < n else ""
        rules.append(f"b{k}: {more}{fields} t{k}")
    rules.append("type: " + " | ".join(literal(t) for t in types))
    if max_relations:
        rules.append("rel: " + " | ".join(literal(r) for r in relations))
        rules.append(f"rels: relation{{0,{max_relations}}}")
        rules.append(f'relation: {literal(f" {SEP} ")} rel " = " tail')
        # TANL's "#n" names the n-th of several spans with the same text: only where a word repeats
        repeats = min(max(Counter(words).values()), MAX_ORDINAL)
        ordinals = f' (" #" ({" | ".join(literal(str(i)) for i in range(1, repeats + 1))}))?' if repeats > 1 else ""
        rules.append("tail: (" + " | ".join(f"w{i}_1" for i in range(n)) + ")" + ordinals)
        if longest_tail >= n:  # any run of words: one chain shared by every start
            rules += [f"w{i}_1: {literal(words[i])}" + (f' (" " w{i + 1}_1)?' if i + 1 < n else "") for i in range(n)]
        else:  # w{i}_{m}: the m-th word of a tail that starts at word i
            for i in range(n):
                for m in range(1, min(longest_tail, n - i) + 1):
                    more = f' (" " w{i}_{m + 1})?' if m < longest_tail and i + m < n else ""
                    rules.append(f"w{i}_{m}: {literal(words[i + m - 1])}{more}")
    else:
        rules.append('rels: ""')
    return Grammar("\n".join(rules) + "\n", _max_bytes(words, types, relations, max_relations, longest_tail),
                   tails=AnnotatedTails(tuple(words), longest_tail) if max_relations else None)


def _max_bytes(words: list[str], types: list[str], relations: list[str], max_relations: int,
               longest_tail: int) -> int:
    """The copy with every word its own group holding the longest type and ``max_relations`` of the
    longest relations and tails: no allowed output is longer."""
    copy = 1 + sum(_bytes(w) for w in words) + len(words) - 1
    tail = max(_bytes(" ".join(words[i:i + m])) for i in range(len(words)) for m in range(1, longest_tail + 1))
    relation = 3 + max((_bytes(r) for r in relations), default=0) + 3 + tail + 3  # " | rel = tail #9"
    group = 2 + 3 + max(_bytes(t) for t in types) + 2 + max_relations * relation  # "[ " " | type" " ]"
    return copy + len(words) * group
