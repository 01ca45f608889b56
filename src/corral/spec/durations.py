"""Durations as operators write them: ``500ms``, ``1s``, ``1.5s``, ``2m``, ``1h`` or a bare number
of seconds. Parsed to ``float`` seconds; negative values are refused, and so are values over
:data:`MAX_DURATION` (a hundred years: "never" in practice, where ``1e400`` or 400 nines would
be an infinite float that breaks every computation after it)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 100 * 365 * 86400.0
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds.

    Accepts an int/float (seconds) or a string with one unit (ms, s, m, h, d). Raises
    ``ValueError`` with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 1s, 2m)")
    if isinstance(value, int | float):
        # an int is compared before float(): float(10**400) raises OverflowError
        seconds = max(-1.0, min(value, MAX_DURATION + 1.0))
    elif isinstance(value, str):
        match = _RE.match(value)
        if not match:
            raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 1s, 2m)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 1s, 2m)")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    if not seconds <= MAX_DURATION:  # also NaN
        raise ValueError(f"duration {value!r} is too long (at most 36500d)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form of ``seconds`` (inverse of :func:`parse_duration`)."""
    if seconds == 0:
        return "0s"
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size) == int(seconds / size):
            return f"{int(seconds / size)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.3g}s"


def human_duration(seconds: float) -> str:
    """``seconds`` rounded to whole seconds in at most two units: ``45s``, ``9m59s``, ``2h5m``,
    ``3d4h`` (for people reading events, not for parsing back)."""
    left = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return "".join(p for p in parts if not p.startswith("0") or len(parts) == 1)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
