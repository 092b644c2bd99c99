"""Options as dataclass fields: help text and allowed values in field metadata, checked in one place.

Each field carries its help text and its allowed values in ``metadata``; the CLI builds its
options from these fields (``cli.py``), ``check_fields`` checks them. A bad value raises
``ConfigError`` with one line naming the option, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, field, fields

from fishdip.errors import FishdipError


class ConfigError(FishdipError, ValueError):
    """An option has a value it cannot take."""


_NOTHING = object()


def option(default, help: str, *, min=None, max=None, above=None, choices=None, cli: str | None = None,
           used_by: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
           family: tuple[str, ...] | None = None, older=_NOTHING):
    """A config field: ``min``/``max`` inclusive bounds, ``above`` an exclusive lower bound,
    ``choices`` the allowed values, ``cli`` the option's name if not the field's; ``used_by`` the
    methods and ``family`` the task families that read it (a value given for none of them is an
    option without effect: ``unused_options``); ``choices`` and ``used_by`` may be functions that
    return them, read when checked (registries that grow: a method added later counts). ``older``:
    the value in effect for runs written before the option existed, where that is not ``default``
    (run folders compare an option a recorded run lacks as this value: ``older_value``)."""
    meta = {"help": help, "min": min, "max": max, "above": above, "choices": choices, "cli": cli,
            "used_by": used_by, "family": family}
    meta = {k: v for k, v in meta.items() if v is not None}
    if older is not _NOTHING:
        meta["older"] = older
    return field(default=default, metadata=meta)


def older_value(f):
    """What a run recorded before field ``f`` existed had in effect: its ``older`` value, else its default."""
    if "older" in f.metadata:
        return f.metadata["older"]
    return f.default if f.default is not MISSING else f.default_factory()


def option_of(cls, name: str, default=_NOTHING, **changes):
    """Field ``name`` of the option dataclass ``cls`` again (its default, help and allowed values), for a
    config that carries the same option, maybe under another name or with another ``default``;
    ``changes`` replace metadata."""
    f = cls.__dataclass_fields__[name]
    return field(default=f.default if default is _NOTHING else default, metadata={**f.metadata, **changes})


def choices_of(f) -> tuple | None:
    """The values field ``f`` allows (None: any in its range)."""
    c = f.metadata.get("choices")
    return c() if callable(c) else c


def readers(f) -> tuple[str, ...] | None:
    """The methods that read field ``f`` (None: every method)."""
    u = f.metadata.get("used_by")
    return u() if callable(u) else u


def option_name(f) -> str:
    return "--" + f.metadata.get("cli", f.name).replace("_", "-")


def allowed(f) -> str:
    """What a field accepts, in words (for help texts and error messages)."""
    m = f.metadata
    if "choices" in m:
        return "one of " + ", ".join(map(str, choices_of(f)))
    parts = []
    if "above" in m:
        parts.append(f"> {m['above']}")
    if "min" in m:
        parts.append(f">= {m['min']}")
    if "max" in m:
        parts.append(f"<= {m['max']}")
    return " and ".join(parts)


# a field's annotation -> the Python types its value may have (an int is a float too; a bool is no number)
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list[int]": (list,)}


def _type_error(f, value) -> str | None:
    """What is wrong with the type of ``value`` for field ``f`` (grid files and the Python API pass
    values as written, e.g. epochs = "3"), or None."""
    names = [t.strip() for t in str(f.type).split("|") if t.strip() != "None"]
    kinds = tuple(k for n in names for k in _TYPES.get(n, (object,)))
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
                "list[int]": "a list of episode numbers"}.get(names[0], names[0]) if names else None
    if names == ["list[int]"] and not all(isinstance(e, int) and not isinstance(e, bool) for e in value):
        return "a list of whole episode numbers"
    return None


def check_fields(obj, skip: tuple[str, ...] = ()) -> None:
    """Every field of a config dataclass against its type and metadata; None is allowed where it is
    the default."""
    for f in fields(obj):
        if f.name not in skip and f.name != "train":
            check_value(f, getattr(obj, f.name))


def check_value(f, value) -> None:
    """One value for field ``f`` (a dataclass field made by ``option``), against its type and metadata."""
    m = f.metadata
    if value is None and f.default is None:
        return
    wrong = _type_error(f, value)
    if wrong:
        raise ConfigError(f"{option_name(f)} {value!r}: must be {wrong}")
    bad = False
    if "choices" in m:
        bad = value not in choices_of(f)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = (isinstance(value, float) and not math.isfinite(value)) or \
              ("min" in m and value < m["min"]) or ("max" in m and value > m["max"]) or \
              ("above" in m and value <= m["above"])
    if bad:
        raise ConfigError(f"{option_name(f)} {value!r}: must be {allowed(f)}")
