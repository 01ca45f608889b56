"""In-memory store with etcd's semantics (the contract is :mod:`corral.store.base`), for the
pure cores' tests, the agent's tests and the simulator.

Time comes from an injected :class:`~corral.core.clock.Clock`. A lease expires when the store
is next used after its deadline, or when :meth:`MemoryStore.expire_leases` is called (the
simulator calls it as virtual time advances); unlike etcd, expiry is never late. History is
kept for watches until :meth:`MemoryStore.compact`.

Failure hooks for the callers' error paths: :meth:`MemoryStore.set_available` (every call
raises :class:`StoreUnavailable` and open watches end with it, as when etcd loses quorum) and
:meth:`MemoryStore.fail_next` (the next calls fail, optionally after applying a write: a lost
reply, ``maybe_applied=True``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.store.base import (
    Compare,
    Delete,
    KeyValue,
    Lease,
    LeaseInfo,
    Op,
    Put,
    RangeResult,
    TxnResult,
    WatchEvent,
)
from corral.store.errors import CompactedError, LeaseNotFound, StoreError, StoreUnavailable


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[bytes] = field(default_factory=set)


# What a watcher's queue carries: an event, the end of the watch (None), or an error to raise.
_Item = WatchEvent | StoreError | None


class MemoryStore:
    """A single-process etcd twin. Not thread-safe; use it from one event loop.

    ``min_ttl`` mirrors etcd's minimum lease TTL (``ceil(1.5 x election timeout)``; 1 s for the
    lan profile): a smaller ``grant`` is rounded up to it.
    """

    def __init__(self, clock: Clock | None = None, *, min_ttl: int = 1) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self._min_ttl = min_ttl
        self._kv: dict[bytes, KeyValue] = {}
        self._revision = 1
        self._history: list[WatchEvent] = []  # every change since the compaction point
        self._compacted = 1  # watches may start at this revision or later
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x1000)
        self._watchers: list[tuple[bytes, asyncio.Queue[_Item]]] = []
        self._available = True
        self._failures: list[bool] = []  # pending fail_next() entries: True = after applying
        self._closed = False

    # --- hooks for tests and the simulator ----------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def set_available(self, available: bool) -> None:
        """Lose (False) or regain (True) every endpoint. Losing them ends open watches with
        :class:`StoreUnavailable`, as the etcd backend's watches end when no member answers."""
        self._available = available
        if not available:
            for _, queue in self._watchers:
                queue.put_nowait(StoreUnavailable("memory store: unavailable (test hook)"))

    def fail_next(self, count: int = 1, *, applied: bool = False) -> None:
        """The next ``count`` calls raise :class:`StoreUnavailable`. With ``applied``, a write
        among them is applied first and reported ``maybe_applied=True`` (a lost reply)."""
        self._failures.extend([applied] * count)

    def expire_leases(self) -> list[int]:
        """Expire every lease whose deadline has passed (its keys go, with delete events);
        return the expired lease ids."""
        now = self.clock.now()
        gone = [lid for lid, lease in self._leases.items() if lease.deadline <= now]
        for lid in gone:
            self._end_lease(lid)
        return gone

    # --- Store: key-value ---------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        self._enter(write=False)
        if not key:
            raise StoreError("memory store: key is not provided")  # as etcd refuses it
        return self._kv.get(key)

    async def range(self, prefix: bytes, *, end: bytes | None = None) -> RangeResult:
        self._enter(write=False)
        if end is None:
            kvs = sorted((kv for k, kv in self._kv.items() if k.startswith(prefix)), key=_by_key)
        else:
            kvs = sorted((kv for k, kv in self._kv.items() if prefix <= k < end), key=_by_key)
        return RangeResult(kvs, self._revision)

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        lost_reply = self._enter(write=True)
        _check_ops([Put(key, value, lease)])
        self._require_leases([Put(key, value, lease)])
        self._revision += 1
        self._apply_put(Put(key, value, lease))
        self._reply_or_lose(lost_reply, "put")
        return self._revision

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        lost_reply = self._enter(write=True)
        keys = self._matching(Delete(key, prefix))
        if keys:
            self._revision += 1
            for k in keys:
                self._apply_delete(k)
        self._reply_or_lose(lost_reply, "delete")
        return len(keys)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        lost_reply = self._enter(write=True)
        _check_ops(success)
        _check_ops(failure)
        ok = all(self._holds(c) for c in compares)
        ops = success if ok else failure
        self._require_leases(ops)
        effective = [op for op in ops if isinstance(op, Put) or self._matching(op)]
        if effective:
            self._revision += 1
            for op in effective:
                if isinstance(op, Put):
                    self._apply_put(op)
                else:
                    for k in self._matching(op):
                        self._apply_delete(k)
        self._reply_or_lose(lost_reply, "txn")
        return TxnResult(ok, self._revision)

    async def compact(self, revision: int) -> None:
        self._enter(write=False)
        if revision > self._revision:
            raise StoreError(f"compact {revision}: a future revision (now {self._revision})")
        if revision > self._compacted:
            self._compacted = revision
            self._history = [e for e in self._history if e.revision >= revision]

    # --- Store: leases ------------------------------------------------------------------------

    async def grant(self, ttl: int) -> Lease:
        self._enter(write=False)  # a lost grant reply leaks a lease that simply expires
        ttl = max(ttl, self._min_ttl)
        lid = next(self._lease_ids)
        self._leases[lid] = _Lease(ttl, self.clock.now() + ttl)
        return Lease(lid, ttl)

    async def keepalive(self, lease_id: int) -> int:
        self._enter(write=False)
        lease = self._lease(lease_id)
        lease.deadline = self.clock.now() + lease.ttl
        return lease.ttl

    async def revoke(self, lease_id: int) -> None:
        self._enter(write=False)
        if lease_id in self._leases:
            self._end_lease(lease_id)

    async def lease_info(self, lease_id: int) -> LeaseInfo:
        self._enter(write=False)
        lease = self._lease(lease_id)
        left = max(0, math.floor(lease.deadline - self.clock.now()))
        return LeaseInfo(lease_id, lease.ttl, left, tuple(sorted(lease.keys)))

    # --- Store: watches -----------------------------------------------------------------------

    async def watch(
        self, prefix: bytes, start_revision: int, *, prev_kv: bool = False
    ) -> AsyncIterator[WatchEvent]:
        self._enter(write=False)
        start = start_revision if start_revision > 0 else self._revision + 1
        if start < self._compacted:
            raise CompactedError(self._compacted)
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        entry = (prefix, queue)
        # History and registration are taken in one step (no await between them): an event is
        # either in the snapshot or in the queue, and `replayed_to` tells which.
        snapshot, replayed_to = list(self._history), self._revision
        self._watchers.append(entry)
        try:
            for event in snapshot:
                if event.revision >= start and event.key.startswith(prefix):
                    yield event if prev_kv else _without_prev(event)
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, StoreError):
                    raise item
                if item.revision > replayed_to and item.revision >= start:
                    yield item if prev_kv else _without_prev(item)
        finally:
            self._watchers.remove(entry)

    async def close(self) -> None:
        self._closed = True
        for _, queue in self._watchers:
            queue.put_nowait(None)

    # --- internals ----------------------------------------------------------------------------

    def _enter(self, *, write: bool) -> bool:
        """Gate every call: closed, unavailable, injected failures, then lease expiry.
        Returns True when a write must be applied and then reported lost."""
        if self._closed:
            raise StoreError("memory store: closed")
        if not self._available:
            raise StoreUnavailable("memory store: unavailable (test hook)")
        if self._failures:
            after = self._failures.pop(0)
            if not (after and write):
                raise StoreUnavailable("memory store: injected failure (test hook)")
            self.expire_leases()
            return True
        self.expire_leases()
        return False

    @staticmethod
    def _reply_or_lose(lost: bool, what: str) -> None:
        if lost:
            raise StoreUnavailable(
                f"memory store: {what} applied, reply lost (test hook)", maybe_applied=True
            )

    def _lease(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return lease

    def _require_leases(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, Put) and op.lease:
                self._lease(op.lease)

    def _matching(self, op: Delete) -> list[bytes]:
        if op.prefix:
            return sorted(k for k in self._kv if k.startswith(op.key))
        return [op.key] if op.key in self._kv else []

    def _holds(self, c: Compare) -> bool:
        kv = self._kv.get(c.key)
        actual: bytes | int
        if c.target == "value":
            if kv is None:
                return False  # etcd: a value compare on a missing key fails, whatever the op
            actual = kv.value
        elif c.target == "version":
            actual = kv.version if kv else 0
        elif c.target == "create_revision":
            actual = kv.create_revision if kv else 0
        else:
            actual = kv.mod_revision if kv else 0
        expected = c.value
        if c.op == "==":
            return actual == expected
        if c.op == "!=":
            return actual != expected
        if c.op == "<":
            return actual < expected  # type: ignore[operator]  # same type: Compare checks
        return actual > expected  # type: ignore[operator]

    def _apply_put(self, op: Put) -> None:
        old = self._kv.get(op.key)
        if old is not None and old.lease in self._leases:
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
        self._emit(WatchEvent("put", op.key, op.value, self._revision, old, kv))

    def _apply_delete(self, key: bytes) -> None:
        old = self._kv.pop(key)
        if old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        self._emit(WatchEvent("delete", key, b"", self._revision, old))

    def _end_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        keys = sorted(k for k in lease.keys if k in self._kv)
        if keys:  # one revision for all its keys, in key order (as etcd's lessor does)
            self._revision += 1
            for key in keys:
                self._apply_delete(key)

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for prefix, queue in self._watchers:
            if event.key.startswith(prefix):
                queue.put_nowait(event)


def _by_key(kv: KeyValue) -> bytes:
    return kv.key


def _without_prev(event: WatchEvent) -> WatchEvent:
    if event.prev is None:
        return event
    return WatchEvent(event.kind, event.key, event.value, event.revision, kv=event.kv)


def _check_ops(ops: Sequence[Op]) -> None:
    """etcd refuses a branch that writes one key twice: two puts, or a put in a delete's range
    (overlapping deletes are allowed). Empty keys are refused too."""
    puts: set[bytes] = set()
    for op in ops:
        if not op.key:
            raise StoreError("memory store: key is not provided")
        if isinstance(op, Put):
            if op.key in puts:
                raise StoreError("memory store: duplicate key given in txn request")
            puts.add(op.key)
    for op in ops:
        if isinstance(op, Delete):
            hit = any(k.startswith(op.key) for k in puts) if op.prefix else op.key in puts
            if hit:
                raise StoreError("memory store: duplicate key given in txn request")
