"""A thin re-export for ``agent/node.py`` until its rewrite (removed at that merge): the
records live in :mod:`corral.records`; import them from there.

``dump``/``load`` are the bare JSON codec of before (no version field, no checks): node.py
writes its registration and failcount records with them, which readers take as version 0.
"""

from __future__ import annotations

import json
from typing import Any

from corral.records import Event as _Event
from corral.records import encode as dump

__all__ = ["Event", "dump", "load"]


def load(raw: bytes) -> Any:
    """Parse a JSON value; a corrupt value reads as None (callers skip it, never crash)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class Event(_Event):
    """:class:`corral.records.Event` with the old name of its ``dump``."""

    def record(self) -> bytes:
        return self.dump()
