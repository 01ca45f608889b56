"""In-memory store with etcd's semantics (see :mod:`corral.store.base`), for the pure cores,
tests and the simulator.

Time comes from an injected :class:`~corral.core.clock.Clock`. Leases expire when the store is
next used after their deadline, or when :meth:`MemoryStore.expire_leases` is called (the
simulator calls it as virtual time advances). History is kept for watches until
:meth:`compact`. ``fail_next``/``set_available`` make the failure paths testable.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from corral.core.clock import Clock, MonotonicClock
from corral.store.base import (
    Compare,
    Delete,
    KeyValue,
    Lease,
    Op,
    Put,
    RangeResult,
    TxnResult,
    WatchEvent,
)
from corral.store.errors import CompactedError, LeaseNotFound, StoreUnavailable


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[bytes] = field(default_factory=set)


class MemoryStore:
    """A single-process etcd twin. Not thread-safe; use from one event loop."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or MonotonicClock()
        self._kv: dict[bytes, KeyValue] = {}
        self._revision = 1
        self._history: list[WatchEvent] = []
        self._compacted = 0
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x1000)
        self._watchers: list[tuple[bytes, asyncio.Queue[WatchEvent | None]]] = []
        self._available = True

    # --- test hooks --------------------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        """Simulate losing (False) or regaining (True) every endpoint."""
        self._available = available

    @property
    def revision(self) -> int:
        return self._revision

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (as etcd's compaction does)."""
        self._check()
        self._compacted = max(self._compacted, min(revision, self._revision))
        self._history = [e for e in self._history if e.revision > self._compacted]

    def expire_leases(self) -> list[int]:
        """Expire every lease whose deadline has passed; return their ids."""
        now = self._clock.now()
        gone = [lid for lid, lease in self._leases.items() if lease.deadline <= now]
        for lid in gone:
            self._end_lease(lid)
        return gone

    # --- Store --------------------------------------------------------------------------------

    def _check(self) -> None:
        if not self._available:
            raise StoreUnavailable("memory store: unavailable (test hook)")
        self.expire_leases()

    async def get(self, key: bytes) -> KeyValue | None:
        self._check()
        return self._kv.get(key)

    async def range(self, prefix: bytes) -> RangeResult:
        self._check()
        kvs = sorted(
            (kv for k, kv in self._kv.items() if k.startswith(prefix)), key=lambda kv: kv.key
        )
        return RangeResult(kvs, self._revision)

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        self._check()
        self._validate_lease(lease)
        self._revision += 1
        self._apply_put(Put(key, value, lease))
        return self._revision

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        self._check()
        keys = self._matching(Delete(key, prefix))
        if keys:
            self._revision += 1
            for k in keys:
                self._apply_delete(k)
        return len(keys)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._check()
        ok = all(self._holds(c) for c in compares)
        ops = success if ok else failure
        for op in ops:
            if isinstance(op, Put):
                self._validate_lease(op.lease)
        effective = [op for op in ops if isinstance(op, Put) or self._matching(op)]
        if effective:
            self._revision += 1
            for op in effective:
                if isinstance(op, Put):
                    self._apply_put(op)
                else:
                    for k in self._matching(op):
                        self._apply_delete(k)
        return TxnResult(ok, self._revision)

    async def grant(self, ttl: int) -> Lease:
        self._check()
        lid = next(self._lease_ids)
        self._leases[lid] = _Lease(ttl, self._clock.now() + ttl)
        return Lease(lid, ttl)

    async def keepalive(self, lease_id: int) -> int:
        self._check()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        lease.deadline = self._clock.now() + lease.ttl
        return lease.ttl

    async def revoke(self, lease_id: int) -> None:
        self._check()
        if lease_id in self._leases:
            self._end_lease(lease_id)

    async def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        if not self._available:
            raise StoreUnavailable("memory store: unavailable (test hook)")
        if start_revision <= self._compacted:
            raise CompactedError(self._compacted)
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        entry = (prefix, queue)
        self._watchers.append(entry)
        try:
            # History and registration are taken in one step (no await between them), so an
            # event is either in the snapshot or in the queue, and replayed_to tells which.
            snapshot, replayed_to = list(self._history), self._revision
            for event in snapshot:
                if event.revision >= start_revision and event.key.startswith(prefix):
                    yield event
            while True:
                live = await queue.get()
                if live is None:
                    return
                if live.revision > replayed_to and live.revision >= start_revision:
                    yield live
        finally:
            self._watchers.remove(entry)

    async def close(self) -> None:
        for _, queue in self._watchers:
            queue.put_nowait(None)

    # --- internals ------------------------------------------------------------------------------

    def _validate_lease(self, lease: int) -> None:
        if lease and lease not in self._leases:
            raise LeaseNotFound(f"lease {lease:x} not found (expired or revoked)")

    def _matching(self, op: Delete) -> list[bytes]:
        if op.prefix:
            return sorted(k for k in self._kv if k.startswith(op.key))
        return [op.key] if op.key in self._kv else []

    def _holds(self, c: Compare) -> bool:
        kv = self._kv.get(c.key)
        actual: bytes | int
        if c.target == "value":
            actual = kv.value if kv else b""
        elif c.target == "version":
            actual = kv.version if kv else 0
        elif c.target == "create_revision":
            actual = kv.create_revision if kv else 0
        else:
            actual = kv.mod_revision if kv else 0
        expected = c.value
        if type(actual) is not type(expected):
            return False
        if c.op == "==":
            return actual == expected
        if c.op == "!=":
            return actual != expected
        if c.op == "<":
            return actual < expected  # type: ignore[operator]
        return actual > expected  # type: ignore[operator]

    def _apply_put(self, op: Put) -> None:
        old = self._kv.get(op.key)
        if old is not None and old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(op.key)
        kv = KeyValue(
            op.key,
            op.value,
            create_revision=old.create_revision if old else self._revision,
            mod_revision=self._revision,
            version=old.version + 1 if old else 1,
            lease=op.lease,
        )
        self._kv[op.key] = kv
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._emit(WatchEvent("put", op.key, op.value, self._revision))

    def _apply_delete(self, key: bytes) -> None:
        old = self._kv.pop(key)
        if old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        self._emit(WatchEvent("delete", key, b"", self._revision))

    def _end_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        keys = sorted(k for k in lease.keys if k in self._kv)
        if keys:
            self._revision += 1
            for key in keys:
                self._apply_delete(key)

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for prefix, queue in self._watchers:
            if event.key.startswith(prefix):
                queue.put_nowait(event)
