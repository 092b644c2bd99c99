"""Align generated text back to input tokens.

A model rarely copies its input perfectly: it drops or repeats words, changes case,
misspells a word, or detokenizes (``U.S .`` -> ``U.S.``). We align *words* of the output
with input *tokens*, as TANL does, so an annotated span covers exactly the input tokens its
own words were aligned with and never stretches over text the model left out. Three kinds
of pairs are allowed, cheapest first:

- a group: up to three output words that spell the same characters as up to three input
  tokens, ignoring spaces and case (``U.S.`` = ``U.S`` + ``.``; ``New York-based`` =
  ``New York - based``): cost 0; the same letters and digits and the same first and last
  character, other punctuation between (``us.`` for ``U.S`` + ``.``): cost 0.1. (A token
  the model left out, such as the comma after ``Booth ,``, is a skip, not part of a group.)
- a misspelled copy: one word for one token whose letters and digits differ in at most a third
  of their characters (``Smit`` for ``Smith``), or only in punctuation (``U.S`` for ``U.S.``):
  cost = that share (punctuation alone: 0.1);
- a substitution of unrelated text: cost 1.5 (it keeps its place, but is no evidence: a span
  made only of such words is invented text, not a copy). Dearer than one skip, so that a word
  the model inserted next to one it left out is not mistaken for a replacement of it.

Skipping a word or a token costs 1. Among alignments of equal cost, the one with the fewest
separate gaps wins (Gotoh's affine-gap recursion), so a copied entity lands on one
contiguous stretch of input rather than on scattered tokens that happen to match.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_GROUP = 3  # words / tokens one group may join
SIMILAR = 1 / 3  # a 1:1 pair with at most this share of letters and digits edited is a misspelled copy
PUNCTUATION_ONLY = 0.1  # a group whose letters and digits agree, but not its punctuation
UNRELATED = 1.5  # a 1:1 pair of dissimilar words (a skip costs 1)
_INF = (float("inf"), 0)


def _normalize(text: str) -> str:
    out = []
    for ch in text:
        if ch.isspace():
            continue
        lower = ch.lower()
        out.append(lower if len(lower) == 1 else ch)  # keep one char per char ("İ".lower() has two)
    return "".join(out)


def _alnum(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def _same_but_punctuation(a: list[str], a_alnum: str, b: list[str], b_alnum: str) -> bool:
    """Pieces ``a`` and ``b`` spell the same letters and digits, start and end alike, and no
    punctuation-only piece sits inside (``Italy ( AP`` is not ``Italy AP``: a token left out)."""
    if not a_alnum or a_alnum != b_alnum or a[0][0] != b[0][0] or a[-1][-1] != b[-1][-1]:
        return False
    return all(_alnum(piece) for side in (a, b) for piece in side[1:-1])


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _substitution_cost(word: str, token: str) -> float:
    a, b = _alnum(word), _alnum(token)
    if not a or not b:  # punctuation: only the same mark is a copy
        a, b = word, token
    elif a == b:
        return PUNCTUATION_ONLY
    longest = max(len(a), len(b), 1)
    if abs(len(a) - len(b)) > SIMILAR * longest:
        return UNRELATED
    share = _edit_distance(a, b) / longest
    return share if share <= SIMILAR else UNRELATED


@dataclass(frozen=True)
class Pair:
    """Output words ``[w0, w1)`` aligned with input tokens ``[t0, t1)``."""

    w0: int
    w1: int
    t0: int
    t1: int
    cost: float  # 0 = exact group, <= SIMILAR misspelled copy, UNRELATED otherwise

    @property
    def is_copy(self) -> bool:
        return self.cost <= SIMILAR


@dataclass
class Alignment:
    """Maps character ranges of an output string to input token spans."""

    word_offsets: list[tuple[int, int]]  # character range of each output word
    pair_of_word: list[Pair | None]  # the pair each output word belongs to (None: skipped)

    def token_span(self, start: int, end: int) -> tuple[int, int] | None:
        """Token span ``[first, last + 1)`` for output characters ``[start, end)``.

        The span runs from the first to the last token copied (exactly or misspelled) by one of
        its words; an unrelated word at either end does not widen it. None when none of its
        words is a copy of input text.
        """
        pairs = [p for (w0, w1), p in zip(self.word_offsets, self.pair_of_word)
                 if p is not None and p.is_copy and w0 < end and w1 > start]
        if not pairs:
            return None
        # a word that joins a token group takes the whole group: "[ Minn. | location ]" for the
        # tokens "Minn" "." is CoNLL04's entity "Minn ." (gold spans keep such split periods)
        return min(p.t0 for p in pairs), max(p.t1 for p in pairs)


def _words(output: str) -> tuple[list[str], list[tuple[int, int]]]:
    words, offsets, pos = [], [], 0
    for word in output.split():
        start = output.index(word, pos)
        words.append(word)
        offsets.append((start, start + len(word)))
        pos = start + len(word)
    return words, offsets


def _pairs(out: list[str], src: list[str], breaks: set[int] | None = None) -> list[Pair]:
    """The cheapest alignment of normalized words ``out`` with normalized tokens ``src``; no
    group of words crosses a break (a word index where an annotated span starts or ends)."""
    breaks = breaks or set()
    n, m = len(out), len(src)
    # best[s][i][j]: (cost, gaps) of aligning out[:i] with src[:j], last move of kind s
    # s = 0 pair, 1 skipped word, 2 skipped token; back[s][i][j]: (previous state, move)
    best = [[[_INF] * (m + 1) for _ in range(n + 1)] for _ in range(3)]
    back: list[list[list[tuple | None]]] = [[[None] * (m + 1) for _ in range(n + 1)] for _ in range(3)]
    best[0][0][0] = (0.0, 0)

    def cheapest(i: int, j: int, opening: tuple[int, ...] = ()) -> tuple[tuple[float, int], int]:
        """Best of the three states at (i, j); a state in ``opening`` pays one gap to leave."""
        options = []
        for s in range(3):
            cost, gaps = best[s][i][j]
            options.append(((cost, gaps + (1 if s in opening else 0)), s))
        return min(options)

    joined_out = [["".join(out[i : i + a]) for a in range(1, MAX_GROUP + 1)] for i in range(n)]
    joined_src = [["".join(src[j : j + b]) for b in range(1, MAX_GROUP + 1)] for j in range(m)]
    alnum_out = [[_alnum(x) for x in row] for row in joined_out]
    alnum_src = [[_alnum(x) for x in row] for row in joined_src]
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            # pairs ending here: groups a:b with equal characters, or a 1:1 substitution
            for a in range(1, min(MAX_GROUP, i) + 1):
                if a > 1 and i - a + 1 in breaks:
                    break  # words i-a .. i-1 would join across the edge of an annotated span
                for b in range(1, min(MAX_GROUP, j) + 1):
                    if a == b == 1:
                        cost = 0.0 if out[i - 1] == src[j - 1] else _substitution_cost(out[i - 1], src[j - 1])
                    elif joined_out[i - a][a - 1] == joined_src[j - b][b - 1]:
                        cost = 0.0
                    elif _same_but_punctuation(out[i - a : i], alnum_out[i - a][a - 1],
                                               src[j - b : j], alnum_src[j - b][b - 1]):
                        cost = PUNCTUATION_ONLY
                    else:
                        continue
                    (prev_cost, gaps), s = cheapest(i - a, j - b)
                    candidate = (prev_cost + cost, gaps)
                    if candidate < best[0][i][j]:
                        best[0][i][j], back[0][i][j] = candidate, (s, a, b, cost)
            if i > 0:  # skip an output word; a gap opens unless the last move skipped one too
                (prev_cost, gaps), s = cheapest(i - 1, j, opening=(0, 2))
                best[1][i][j], back[1][i][j] = (prev_cost + 1, gaps), (s, 1, 0, 1.0)
            if j > 0:  # skip an input token
                (prev_cost, gaps), s = cheapest(i, j - 1, opening=(0, 1))
                best[2][i][j], back[2][i][j] = (prev_cost + 1, gaps), (s, 0, 1, 1.0)
    pairs: list[Pair] = []
    _, state = cheapest(n, m)
    i, j = n, m
    while i > 0 or j > 0:
        prev_state, a, b, cost = back[state][i][j]
        if state == 0:
            pairs.append(Pair(i - a, i, j - b, j, cost))
        i, j, state = i - a, j - b, prev_state
    return pairs[::-1]


def align(output: str, tokens: list[str], edges: set[int] | None = None) -> Alignment:
    """Align ``output`` (plain text, annotations removed) with the input ``tokens``.

    ``edges``: character offsets where annotated spans start and end; a group of words never
    joins across one, so two adjacent entities never merge into one."""
    words, offsets = _words(output)
    out = [_normalize(w) for w in words]
    src = [_normalize(t) for t in tokens]
    if out == src:  # the common case: a faithful copy, no DP needed
        pairs = [Pair(i, i + 1, i, i + 1, 0.0) for i in range(len(out))]
    else:
        breaks = {w for w, (start, _) in enumerate(offsets) if w and start in (edges or ())}
        breaks |= {w + 1 for w, (_, end) in enumerate(offsets) if end in (edges or ())}
        pairs = _pairs(out, src, breaks)
    pair_of_word: list[Pair | None] = [None] * len(words)
    for pair in pairs:
        for w in range(pair.w0, pair.w1):
            pair_of_word[w] = pair
    return Alignment(offsets, pair_of_word)
