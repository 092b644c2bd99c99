"""Dialogue state tracking (MultiWOZ 2.1, TRADE's 30 slots) as text-to-text.

Input: the dialogue so far, ``[user] i need a cheap hotel [system] in which area ? [user] the north``.
Output: every slot of each active domain, unfilled ones as ``none``:
``[belief] hotel area north , hotel book day none , ... , hotel type none [belief]``.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

from fishdip.formats.grammar import Grammar, literal
from fishdip.structures import DSTDecoded

BELIEF = "[belief]"
NONE = "none"

# TRADE's ontology: the 30 slots of the five domains it tracks (hospital and police are dropped)
SLOTS: dict[str, tuple[str, ...]] = {
    "attraction": ("area", "name", "type"),
    "hotel": ("area", "book day", "book people", "book stay", "internet", "name", "parking", "pricerange",
              "stars", "type"),
    "restaurant": ("area", "book day", "book people", "book time", "food", "name", "pricerange"),
    "taxi": ("arriveby", "departure", "destination", "leaveat"),
    "train": ("arriveby", "book people", "day", "departure", "destination", "leaveat"),
}
ALL_SLOTS = tuple(f"{d}-{s}" for d, slots in SLOTS.items() for s in slots)
_NATURAL = {"pricerange": "price range", "arriveby": "arrive by", "leaveat": "leave at"}


def natural_slot(slot: str) -> str:
    return _NATURAL.get(slot, slot)


def encode(belief: dict[str, str]) -> str:
    domains = sorted({slot.split("-", 1)[0] for slot in belief})
    items = [f"{d} {natural_slot(s)} {belief.get(f'{d}-{s}', NONE)}" for d in domains for s in SLOTS[d]]
    return " ".join([BELIEF, " , ".join(items), BELIEF]) if items else f"{BELIEF} {BELIEF}"


def _match_slot(domain: str, rest: str) -> tuple[str, str] | None:
    """Longest slot name of ``domain`` that starts ``rest``; returns (slot, value)."""
    for slot in sorted(SLOTS[domain], key=lambda s: -len(natural_slot(s))):
        name = natural_slot(slot)
        if rest == name or rest.startswith(name + " "):
            return slot, rest[len(name):].strip()
    return None


def decode(text: str) -> DSTDecoded:
    errors: Counter = Counter()
    match = re.search(re.escape(BELIEF) + r"(.*?)" + re.escape(BELIEF), text)
    if match is None:
        errors["format_error"] += 1
        body = text.replace(BELIEF, " ")
    else:
        body = match.group(1)
    belief: dict[str, str] = {}
    for item in body.split(" , "):
        words = " ".join(item.split())
        if not words:
            continue
        domain, _, rest = words.partition(" ")
        if domain not in SLOTS:
            errors["unknown_domain"] += 1
            continue
        found = _match_slot(domain, rest)
        if found is None:
            errors["unknown_slot"] += 1
            continue
        slot, value = found
        if not value:
            errors["missing_value"] += 1
        elif value != NONE:
            belief[f"{domain}-{slot}"] = value
    return DSTDecoded(belief, errors)



# constrained decoding: a value is 1..MAX_VALUE_WORDS words of printable ASCII (TRADE's values are)
# without spaces, commas or brackets, each at most MAX_WORD_CHARS characters
MAX_VALUE_WORDS, MAX_WORD_CHARS = 8, 30
_WORD = r"[\x21-\x2b\x2d-\x5a\x5c\x5e-\x7e]"


@cache  # the same for every dialogue turn: built once
def belief_grammar() -> Grammar:
    """What ``encode`` can write, as a grammar (formats/grammar.py): ``[belief]``, then for each
    active domain, in order, every one of its slots in order with a value, then ``[belief]``. Slot
    names come from the schema; values are free words within the bounds above."""
    domains = list(SLOTS)
    # the lexemes that may follow each other differ by their second byte at the latest: " , ",
    # " [belief]" and MORE (a space and a word) after a value
    rules = [f'start: " "? {literal(BELIEF + " ")} (r0 {literal(" " + BELIEF)} | {literal(BELIEF)})',
             f"WORD: /{_WORD}{{1,{MAX_WORD_CHARS}}}/", f"MORE: / {_WORD}{{1,{MAX_WORD_CHARS}}}/",
             f"value: WORD MORE{{0,{MAX_VALUE_WORDS - 1}}}"]
    for i, domain in enumerate(domains):  # r<i>: the active domains from the i-th on, at least one
        later = f'(" , " r{i + 1})? | r{i + 1}' if i + 1 < len(domains) else ""
        rules.append(f"r{i}: d{i} {later}".rstrip())
        items = ' " , " '.join(f"{literal(f'{domain} {natural_slot(s)} ')} value" for s in SLOTS[domain])
        rules.append(f"d{i}: {items}")
    value = MAX_VALUE_WORDS * (MAX_WORD_CHARS + 1)
    items = sum(len(f"{d} {natural_slot(s)} ") + value + 3 for d in domains for s in SLOTS[d])
    return Grammar("\n".join(rules) + "\n", 1 + len(BELIEF) * 2 + 2 + items, groups=False)
