"""MultiWOZ 2.1 as preprocessed by TRADE (Wu et al. 2019): ``{train,dev,test}_dials.json``.

Each dialogue: ``{"dialogue_idx", "domains", "dialogue": [{"turn_idx", "system_transcript",
"transcript", "belief_state": [{"slots": [["hotel-area", "north"]], "act": "inform"}], ...}]}``.
One example per turn; the belief state is cumulative. Slots outside TRADE's five domains are dropped.
Gold values get TRADE's label fixes (``fix_label``: typos, "center" -> "centre", values filed
under the wrong slot -> none), as TRADE and the papers that report its numbers (TANL) do.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.errors import DataError
from fishdip.formats.dst import ALL_SLOTS
from fishdip.io import read_json
from fishdip.structures import DSTExample

# TRADE's label fixes (utils_multiWOZ_DST.fix_general_label_error), as tables
TYPOS = {
    # type
    "guesthouse": "guest house", "guesthouses": "guest house", "guest": "guest house",
    "mutiple sports": "multiple sports", "sports": "multiple sports", "mutliple sports": "multiple sports",
    "swimmingpool": "swimming pool", "concerthall": "concert hall", "concert": "concert hall",
    "pool": "swimming pool", "night club": "nightclub", "mus": "museum", "ol": "architecture",
    "colleges": "college", "coll": "college", "architectural": "architecture", "musuem": "museum",
    "churches": "church",
    # area
    "center": "centre", "center of town": "centre", "near city center": "centre", "in the north": "north",
    "cen": "centre", "east side": "east", "east area": "east", "west part of town": "west", "ce": "centre",
    "town center": "centre", "centre of cambridge": "centre", "city center": "centre", "the south": "south",
    "scentre": "centre", "town centre": "centre", "in town": "centre", "north part of town": "north",
    "centre of town": "centre", "cb30aq": "none",
    # price, day, parking, internet, stars
    "mode": "moderate", "moderate -ly": "moderate", "mo": "moderate", "next friday": "friday",
    "monda": "monday", "free parking": "free", "free internet": "yes", "4 star": "4", "4 stars": "4",
    "0 star rarting": "none",
    # others
    "y": "yes", "any": "dontcare", "n": "no", "does not care": "dontcare", "not men": "none", "not": "none",
    "not mentioned": "none", "": "none", "not mendtioned": "none", "3 .": "3", "does not": "no",
    "fun": "none", "art": "none",
}
# values filed under a slot they cannot belong to: dropped
_MISFILED = {
    "hotel-type": {"nigh", "moderate -ly priced", "bed and breakfast", "centre", "venetian", "intern",
                   "a cheap -er hotel"},
    "hotel-internet": {"4"},
    "hotel-pricerange": {"2"},
    "attraction-type": {"gastropub", "la raza", "galleria", "gallery", "science", "m"},
}
_OUT_OF_ONTOLOGY = {"restaurant-area": {"stansted airport", "cambridge", "silver street"},
                    "attraction-area": {"norwich", "ely", "museum", "same area as hotel"}}
_TRUNCATED = {"area": {"no": "north", "we": "west", "cent": "centre"}, "day": {"we": "wednesday", "no": "none"}}


def fix_label(slot: str, value: str) -> str:
    """A gold value as TRADE corrects it; ``none`` means the slot is not filled."""
    value = TYPOS.get(value, value)
    if value in _MISFILED.get(slot, ()) or ("area" in slot and value == "moderate") or \
            ("day" in slot and value == "t"):
        value = "none"
    elif slot == "hotel-type" and value in {"hotel with free parking and free wifi", "4", "3 star hotel"}:
        value = "hotel"
    elif "area" in slot:
        value = _TRUNCATED["area"].get(value, value)
    elif "day" in slot:
        value = _TRUNCATED["day"].get(value, value)
    elif "price" in slot and value == "ch":
        value = "cheap"
    elif "internet" in slot and value == "free":
        value = "yes"
    if value in _OUT_OF_ONTOLOGY.get(slot, ()):
        value = "none"
    return value


def _belief(turn: dict, where: str) -> dict[str, str]:
    belief = {}
    for item in turn.get("belief_state", []):
        for pair in item.get("slots", []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise DataError(f"{where}: belief_state slots must be [slot, value] pairs, got {pair!r}")
            slot, value = pair
            slot = slot.replace(" ", "-", 1) if "-" not in slot else slot
            if slot not in ALL_SLOTS:
                continue
            value = fix_label(slot, " ".join(str(value).split()))
            if value != "none":
                belief[slot] = value
    return belief


def read_multiwoz(path: Path) -> list[DSTExample]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of dialogues")
    examples = []
    for i, dialogue in enumerate(data):
        name = str(dialogue.get("dialogue_idx", i)) if isinstance(dialogue, dict) else str(i)
        turns = dialogue.get("dialogue") if isinstance(dialogue, dict) else None
        if not isinstance(turns, list):
            raise DataError(f"{path}: dialogue {i} ({name}): 'dialogue' must be a list of turns")
        history: list[str] = []
        for t, turn in enumerate(sorted(turns, key=lambda x: x.get("turn_idx", 0))):
            where = f"{path}: dialogue {i} ({name}), turn {t}"
            if "transcript" not in turn:
                raise DataError(f"{where}: missing 'transcript'")
            if turn.get("system_transcript"):
                history.append(f"[system] {' '.join(turn['system_transcript'].split())}")
            history.append(f"[user] {' '.join(turn['transcript'].split())}")
            examples.append(DSTExample(" ".join(history), _belief(turn, where), id=f"{name}:{t}", dialogue=name))
    return examples
