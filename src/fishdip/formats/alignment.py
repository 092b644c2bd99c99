"""Align generated text back to input tokens.

A model rarely copies its input perfectly: it may change case, drop or add a
character, or detokenize (``U.S .`` -> ``U.S.``). We therefore align at the
character level with whitespace removed, using edit-distance dynamic
programming, and map every output character to the input token it copies.
Spans in the output then become token spans in the input.
"""

from __future__ import annotations

from dataclasses import dataclass


def _normalize(ch: str) -> str:
    lower = ch.lower()
    return lower if len(lower) == 1 else ch  # keep one char per char ("İ".lower() has two)


@dataclass
class Alignment:
    """Maps positions of an output string to input token indices."""

    char_to_token: list[int | None]  # one entry per character of the output string
    exact: list[bool]  # whether that character equals the input character it is aligned with

    def token_span(self, start: int, end: int) -> tuple[int, int] | None:
        """Token span ``[first, last + 1)`` covered by output characters ``[start, end)``.

        None when no character in the range is an exact copy: a span made only of
        substitutions is invented text, not a misspelled copy.
        """
        if not any(self.exact[start:end]):
            return None
        tokens = [t for t in self.char_to_token[start:end] if t is not None]
        return min(tokens), max(tokens) + 1


def _edit_alignment(out: str, src: str) -> list[int | None]:
    """For each char of ``out``, the index of the ``src`` char it is aligned with (Levenshtein)."""
    n, m = len(out), len(src)
    # cost[i][j]: edit distance between out[:i] and src[:j]
    prev = list(range(m + 1))
    back: list[bytearray] = []  # 0 = match/substitute, 1 = delete from out, 2 = insert src char
    for i in range(1, n + 1):
        cur = [i] + [0] * m
        row = bytearray(m + 1)
        row[0] = 1
        oc = out[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if oc == src[j - 1] else 1)
            up = prev[j] + 1
            left = cur[j - 1] + 1
            if diag <= up and diag <= left:
                cur[j] = diag
            elif up <= left:
                cur[j], row[j] = up, 1
            else:
                cur[j], row[j] = left, 2
        back.append(row)
        prev = cur
    result: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        move = back[i - 1][j]
        if move == 0:
            # substitutions still count as aligned: a misspelled copy keeps its position
            result[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    return result


def align(output: str, tokens: list[str]) -> Alignment:
    """Align ``output`` (plain text, annotations removed) with the input ``tokens``."""
    src_chars: list[str] = []
    owner: list[int] = []
    for index, token in enumerate(tokens):
        for ch in token:
            if not ch.isspace():
                src_chars.append(_normalize(ch))
                owner.append(index)
    positions = [i for i, ch in enumerate(output) if not ch.isspace()]
    out_chars = [_normalize(output[i]) for i in positions]

    if out_chars == src_chars:  # the common case: a faithful copy, no DP needed
        matched: list[int | None] = list(range(len(out_chars)))
    else:
        matched = _edit_alignment("".join(out_chars), "".join(src_chars))

    char_to_token: list[int | None] = [None] * len(output)
    exact = [False] * len(output)
    for out_index, out_char, src_index in zip(positions, out_chars, matched):
        if src_index is not None:
            char_to_token[out_index] = owner[src_index]
            exact[out_index] = out_char == src_chars[src_index]
    return Alignment(char_to_token, exact)
