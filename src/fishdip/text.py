"""Raw text -> tokens the way the CoNLL-style corpora split them, with character offsets.

``John F. Kennedy visited the U.S. on Nov. 22 .`` keeps ``F.``, ``U.S.`` and ``Nov.`` whole (as
CoNLL04 does), splits clitics (``Reagan 's``, ``did n't``) and sentence-final periods, and keeps
``@user``, ``#tag`` and URLs whole (as WNUT-17 does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# abbreviations that keep their period inside a sentence (CoNLL04's most frequent ones)
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sen", "rep", "gov", "gen", "lt", "col", "capt", "sgt", "rev", "st", "jr", "sr",
    "inc", "corp", "co", "ltd", "bros", "no", "vs", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "ala", "ariz", "ark", "calif", "colo", "conn", "del", "fla", "ga", "ill", "ind", "kan",
    "ky", "la", "md", "mass", "mich", "minn", "miss", "mo", "mont", "neb", "nev", "okla", "ore", "pa", "tenn",
    "tex", "va", "vt", "wash", "wis", "wyo", "ft", "mt",
}
_TOKEN = re.compile(r"""
    https?://\S+ | www\.\S+                      # URLs
  | [@\#]\w+                                     # @user, #tag
  | (?:[A-Za-z]\.){2,}                           # U.S. a.m. D.C.
  | \d+(?:[.,:/]\d+)*                            # 1,000  3.5  2:30  1/2
  | (?i:n't) | '(?i:s|re|ve|ll|d|m)\b            # clitics: did n't, Reagan 's
  | \w+(?=n't) | \w+(?='(?i:s|re|ve|ll|d|m)\b)    # the word before a clitic
  | \w+(?:[-'.&]\w+)*\.?                         # words, hyphenated words, a trailing period
  | \S                                           # any other character
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offsets into the input text, end exclusive
    end: int


def _keeps_period(word: str) -> bool:
    stem = word[:-1]
    return (len(stem) == 1 and stem.isalpha()) or stem.lower() in ABBREVIATIONS or "." in stem


def tokenize(text: str) -> list[Token]:
    """Tokens with their character offsets in ``text``."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        word, start = match.group(), match.start()
        if len(word) > 1 and word.endswith(".") and not word.startswith(("http", "www")) and \
                not _keeps_period(word):
            tokens += [Token(word[:-1], start, start + len(word) - 1), Token(".", start + len(word) - 1, match.end())]
        else:
            tokens.append(Token(word, start, match.end()))
    # the last token: a sentence-final abbreviation gives up its period ("the U.S ." as in CoNLL04)
    if tokens and len(tokens[-1].text) > 2 and tokens[-1].text.endswith(".") and tokens[-1].text[-2] != ".":
        last = tokens.pop()
        tokens += [Token(last.text[:-1], last.start, last.end - 1), Token(".", last.end - 1, last.end)]
    return tokens
