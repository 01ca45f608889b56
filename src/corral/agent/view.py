"""A copy of the cluster prefix kept by the agent's watch (shell data).

The controller plans from it instead of reading the whole store every step: one range read
when the watch starts (and again whenever it is lost), then every change from the watch
alone, so a step costs what changed, not the size of the cluster.

Contract:
- :meth:`load` replaces the copy with a range read; :meth:`apply` applies one watch event in
  revision order; :meth:`lost` marks the copy as not to be trusted until the next load.
- ``revision``: the store revision the copy reflects. A reader that wrote at revision ``R``
  (the controller) waits until ``revision >= R`` before planning again, so it never plans
  from a copy that misses its own last write.
- The events of one transaction come in one watch response and are applied before any other
  task runs (the watch loop does not yield between them), so a reader never sees half of one.
"""

from __future__ import annotations

from corral.store import KeyValue, RangeResult, WatchEvent


class StoreView:
    def __init__(self) -> None:
        self._kvs: dict[bytes, KeyValue] = {}
        self.revision = 0
        self.ready = False

    def load(self, result: RangeResult) -> None:
        self._kvs = {kv.key: kv for kv in result.kvs}
        self.revision = result.revision
        self.ready = True

    def apply(self, event: WatchEvent) -> None:
        if event.revision < self.revision:
            return  # already in the range read the copy started from
        if event.kind == "delete":
            self._kvs.pop(event.key, None)
        elif event.kv is not None:
            self._kvs[event.key] = event.kv
        else:  # a store that does not say: what is known of it (a read fills the rest)
            self.ready = False
        self.revision = event.revision

    def lost(self) -> None:
        self.ready = False

    def kvs(self) -> list[KeyValue]:
        """Every key, in key order (as a range read returns them)."""
        return [self._kvs[k] for k in sorted(self._kvs)]

    def has_prefix(self, prefix: bytes) -> bool:
        """Whether any key starts with ``prefix`` (no sort: a cheap look)."""
        return any(k.startswith(prefix) for k in self._kvs)

    def sees(self, revision: int) -> bool:
        """Whether the copy is trusted and includes the write at ``revision``."""
        return self.ready and self.revision >= revision
