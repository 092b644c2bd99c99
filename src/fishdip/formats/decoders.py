"""The decoders that turn augmented text into entity / relation structures, by name.

- ``fishdip`` (default): word alignment that tolerates detokenized, re-cased and misspelled
  copies and never stretches a span over skipped text (``alignment.py``); tails matched by
  name ignoring case and spaces.
- ``tanl``: TANL's published rules (``tanl_decoder.py``), for scores comparable with TANL's.

Both read the same format and agree on every gold target (tested on the real datasets).
"""

from __future__ import annotations

from collections.abc import Callable

from fishdip.formats import entity_relation, tanl_decoder
from fishdip.formats.entity_relation import Decoded, Schema
from fishdip.options import ConfigError

Decoder = Callable[[str, list[str], Schema], Decoded]

DECODERS: dict[str, Decoder] = {
    "fishdip": entity_relation.decode,
    "tanl": tanl_decoder.decode,
}


def get_decoder(name: str) -> Decoder:
    if name not in DECODERS:
        raise ConfigError(f"unknown decoder {name!r} (one of {', '.join(DECODERS)})")
    return DECODERS[name]
