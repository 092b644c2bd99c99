"""MultiWOZ 2.1 as preprocessed by TRADE (Wu et al. 2019): ``{train,dev,test}_dials.json``.

Each dialogue: ``{"dialogue_idx", "domains", "dialogue": [{"turn_idx", "system_transcript",
"transcript", "belief_state": [{"slots": [["hotel-area", "north"]], "act": "inform"}], ...}]}``.
One example per turn; the belief state is cumulative. Slots outside TRADE's five domains are dropped.
"""

from __future__ import annotations

from pathlib import Path

from fishdip.errors import DataError
from fishdip.formats.dst import ALL_SLOTS, DSTExample
from fishdip.io import read_json


def _belief(turn: dict, where: str) -> dict[str, str]:
    belief = {}
    for item in turn.get("belief_state", []):
        for pair in item.get("slots", []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise DataError(f"{where}: belief_state slots must be [slot, value] pairs, got {pair!r}")
            slot, value = pair
            slot = slot.replace(" ", "-", 1) if "-" not in slot else slot
            if slot in ALL_SLOTS and value and value != "none":
                belief[slot] = " ".join(str(value).split())
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
