"""TANL's own decoding rules (Paolini et al. 2021), for scores comparable with published ones.

Reimplemented from the paper's description and the behaviour of the public TANL code
(``output_formats.py``), so that ``--decoder tanl`` reads generated text the way TANL does:

1. Parsing: ``[``, ``]``, ``|`` and ``=`` are split off as words; the text is read left to
   right with a stack of open brackets. Words before an entity's first ``|`` are its name
   and part of the copied sentence; words after it are its tags, split at ``|``; a tag
   ``relation = tail`` is split at `` = ``. A ``]`` with no open bracket is an ordinary word;
   a bracket still open at the end is dropped.
2. Alignment: input tokens and copied words are aligned by word-level edit distance (a pair
   of unequal words costs 1, as does a skipped word on either side; ties prefer a pair, then
   skipping an input token, traced back from the end). Words must be equal exactly (case and
   punctuation included).
3. An entity covers the input tokens from its first to its last aligned word (unequal pairs
   count); with none aligned it is dropped. Its first tag must be a known entity type.
4. A relation's tail is looked up by the written entity name (exactly); among entities of
   that name, the closest to the head (gap between the spans) that does not already give the
   same relation is taken.

One addition, needed to read fishdip's own targets: a tail written ``name #n`` (fishdip's
encoder writes it only where rule 4 alone would pick the wrong entity) is the n-th entity
of that name. TANL never writes ``#``; for TANL-style output this changes nothing.
The input tokens are compared in their escaped form (``[`` -> ``(``), as the model reads them.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import groupby

from fishdip.formats.entity_relation import Decoded, Entity, Relation, Schema, escape
from fishdip.formats.tanl import CLOSE, EQUALS, OPEN, SEP

_ORDINAL = re.compile(r"^(.*\S)\s+#(\d+)$")


def _split_words(text: str) -> list[str]:
    for special in (OPEN, CLOSE, SEP, EQUALS):
        text = text.replace(special, f" {special} ")
    return text.split()


def parse(text: str) -> tuple[list[str], list[tuple[str, list[tuple[str, ...]], int, int]]]:
    """Copied words and raw entities ``(name, tags, first word, end word)``."""
    copied: list[str] = []
    entities = []
    stack: list[list] = []  # [start, in_name, name words, tag words]
    for word in _split_words(text):
        if word == OPEN:
            stack.append([len(copied), True, [], []])
        elif word == CLOSE and stack:
            start, in_name, name, other = stack.pop()
            tags: list[tuple[str, ...]] = []
            if not in_name:
                groups = [list(g) for is_sep, g in groupby(other, lambda w: w == SEP) if not is_sep]
                tags = [tuple(" ".join(g).split(f" {EQUALS} ")) for g in groups]
            entities.append((" ".join(name), tags, start, len(copied)))
        elif stack and word == SEP:
            if stack[-1][1]:
                stack[-1][1] = False
            else:
                stack[-1][3].append(word)
        elif stack:
            in_names = True
            for entry in reversed(stack):
                if entry[1]:
                    entry[2].append(word)
                else:
                    entry[3].append(word)
                    in_names = False
                    break
            if in_names:
                copied.append(word)
        else:
            copied.append(word)
    return copied, entities


def align_words(tokens: list[str], words: list[str]) -> dict[int, int]:
    """Word index -> token index, for every pair (equal or not) of the cheapest alignment."""
    n, m = len(tokens), len(words)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 1 pair, 2 skip token, 3 skip word
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            options = []
            if i and j:
                options.append((cost[i - 1][j - 1] + (tokens[i - 1] != words[j - 1]), 1))
            if i:
                options.append((cost[i - 1][j] + 1, 2))
            if j:
                options.append((cost[i][j - 1] + 1, 3))
            cost[i][j], move[i][j] = min(options)
    matching: dict[int, int] = {}
    i, j = n, m
    while i > 0 and j > 0:
        if move[i][j] == 1:
            matching[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif move[i][j] == 2:
            i -= 1
        else:
            j -= 1
    return matching


def _gap(entity: Entity, head: Entity) -> int:
    return min(abs(entity.start - head.end), abs(head.start - entity.end))


def decode(text: str, tokens: list[str], schema: Schema) -> Decoded:
    """Generated text -> structures, by TANL's rules. Never raises; problems are counted."""
    errors: Counter = Counter()
    if text.count(OPEN) != text.count(CLOSE):
        errors["format_error"] += 1
    words, raw = parse(text)
    matching = align_words([escape(t) for t in tokens], words)
    entity_keys = {name: key for key, name in schema.entity_types.items()}
    relation_keys = {name: key for key, name in schema.relation_types.items()}

    entities: set[Entity] = set()
    by_name: dict[str, list[Entity]] = {}
    pending: list[tuple[str, Entity, str]] = []
    for name, tags, start, end in raw:
        aligned = [matching[j] for j in range(start, end) if j in matching]
        if not aligned:
            errors["unaligned_entity"] += 1
            continue
        if not tags or len(tags[0]) > 1:
            errors["missing_type"] += 1
            continue
        type_key = entity_keys.get(tags[0][0])
        if type_key is None:
            errors["unknown_entity_type"] += 1
            continue
        entity = Entity(aligned[0], aligned[-1] + 1, type_key)
        entities.add(entity)
        by_name.setdefault(name, []).append(entity)
        for tag in tags[1:]:
            if len(tag) != 2:
                errors["malformed_relation"] += 1
            elif tag[0] not in relation_keys:
                errors["unknown_relation_type"] += 1
            else:
                pending.append((relation_keys[tag[0]], entity, tag[1]))

    relations: set[Relation] = set()
    for rel_key, head, tail_name in pending:
        match = _ORDINAL.match(tail_name)
        if tail_name not in by_name and match and match.group(1) in by_name:
            named = sorted(set(by_name[match.group(1)]))
            n = int(match.group(2))
            if 1 <= n <= len(named):
                relations.add(Relation(rel_key, head, named[n - 1]))
                continue
        if tail_name not in by_name:
            errors["missing_tail"] += 1
            continue
        for candidate in sorted(by_name[tail_name], key=lambda e, h=head: _gap(e, h)):
            relation = Relation(rel_key, head, candidate)
            if relation not in relations:
                relations.add(relation)
                break
    return Decoded(entities, relations, errors)
