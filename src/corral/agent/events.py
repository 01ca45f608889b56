"""The agent's events (``events/<time_ns>-<node>``) and its recent decisions (shell).

:meth:`EventLog.event` writes an event for operators; a store that fails loses that event,
never the agent's round (events are reports, not state). :meth:`EventLog.decide` keeps the
last decisions in memory (tests, debugging) and logs them at debug level (events at info, with
their resource as the journal's ``CORRAL_RESOURCE`` field). Event keys come
from the injected wall clock, strictly increasing per agent (two events in one tick of the
clock keep their order and do not overwrite each other).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from corral.records import Event
from corral.store import Keys, Put, Store, StoreError

log = logging.getLogger(__name__)
KEEP_DECISIONS = 100


class EventLog:
    def __init__(self, store: Store, keys: Keys, node: str, wall: Callable[[], float]) -> None:
        self._store, self._keys, self._node, self._wall = store, keys, node, wall
        self._last_ns = 0
        self.decisions: list[str] = []
        self.counts: dict[str, int] = {}  # events written by kind, since start (metrics)

    def decide(self, decision: str, level: int = logging.DEBUG, resource: str = "") -> None:
        self.decisions = [*self.decisions[-(KEEP_DECISIONS - 1) :], decision]
        extra = {"resource": resource} if resource else None  # a journal field (corral.journal)
        log.log(level, "%s: %s", self._node, decision, extra=extra)

    def op(self, kind: str, reason: str, resource: str = "") -> Put:
        """The write of one event (to put in a transaction of its own)."""
        now = self._wall()
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._last_ns = max(int(now * 1e9), self._last_ns + 1)
        key = self._keys.event_key(self._last_ns, self._node)
        return Put(key, Event(now, self._node, resource, kind, reason).dump())

    async def event(self, kind: str, reason: str, resource: str = "") -> None:
        self.decide(f"{kind}: {reason}", logging.INFO, resource)  # events: in every log
        op = self.op(kind, reason, resource)
        with contextlib.suppress(StoreError):
            await self._store.put(op.key, op.value)
