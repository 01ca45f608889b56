"""Malformed records this process read and skipped: counted, and logged once per value.

Anyone who can write etcd can write a record that does not read (an older or newer corral,
an operator with ``etcdctl``, a bug, an attacker). Readers skip such a value (a record reads
whole or not at all) and report it here with :meth:`RecordDrops.skip`:

- ``skipped`` counts every read that skipped a value (the agent loop rereads keys every
  round, so one bad value counts once per read: a rate that does not fall means the value
  is still there);
- ``records`` counts distinct values (key and mod revision) skipped, ``by_section`` the
  same by the key's section (``assign``, ``status``, ``admin``, ...);
- the first skip of each value logs one warning naming the key, its revision and why (the
  last :data:`REMEMBERED` values are remembered, so a value rewritten malformed again is
  said again).

:data:`DROPS` is the process's instance (what the metrics endpoint exports), as a
process-wide registry of counters is; tests read its :meth:`RecordDrops.as_dict` before and
after.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

log = logging.getLogger("corral.records")

REMEMBERED = 4096


class RecordDrops:
    """Counters of skipped malformed records (see the module docstring)."""

    def __init__(self) -> None:
        self.skipped = 0
        self.records = 0
        self.by_section: dict[str, int] = {}
        self._said: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._lock = threading.Lock()  # the gossip pump thread and the loop may both read

    def skip(self, key: bytes, revision: int, reason: str) -> None:
        """Count one skipped value of ``key`` at ``revision`` (log it the first time)."""
        with self._lock:
            self.skipped += 1
            if (key, revision) in self._said:
                return
            self._said[(key, revision)] = None
            while len(self._said) > REMEMBERED:
                self._said.popitem(last=False)
            self.records += 1
            section = _section(key)
            self.by_section[section] = self.by_section.get(section, 0) + 1
        log.warning(
            "skipped a malformed record %s (revision %d): %s",
            key.decode(errors="replace"),
            revision,
            reason,
        )

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {
                "skipped": self.skipped,
                "records": self.records,
                "by_section": dict(self.by_section),
            }


def _section(key: bytes) -> str:
    """``/corral/<cluster>/<section>/...`` -> ``section`` (``?`` for another shape)."""
    parts = key.decode(errors="replace").split("/")
    return parts[3] if len(parts) > 4 and parts[1] == "corral" else "?"


DROPS = RecordDrops()
