"""The store contract: what corral needs of etcd, and what the in-memory twin must match.

Both backends (:mod:`corral.store.etcd`, :mod:`corral.store.memory`) follow etcd v3's
semantics, stated here so that they and their callers agree. ``tests/store`` checks every point
below against both.

Revisions
    One store-wide counter. A fresh store is at revision 1. Every effective write (a put, a
    delete that removes at least one key, a txn whose chosen branch writes, the expiry or
    revoke of a lease that holds keys) increments it exactly once. Each key carries
    ``create_revision``, ``mod_revision`` and ``version`` (1 when created, +1 per put); a
    deleted key is gone, and a new put starts again at version 1.

Linearizable
    ``get``, ``range``, ``put``, ``delete``, ``txn``, ``grant``, ``revoke``, ``lease_info`` and
    ``compact`` act in one global order: a call sees every write that completed before it
    started. (etcd: reads go through the raft leader; a member cut off from its quorum answers
    "no leader" and the client moves on, it never serves stale data.)

Compare-and-swap
    ``txn(compares, success, failure)``: if every compare holds, the ``success`` ops run, else
    the ``failure`` ops run; either way atomically, at one revision. ``TxnResult.succeeded``
    says which branch ran. A missing key compares as version 0, create_revision 0 and
    mod_revision 0, but **every value compare on a missing key fails** (etcd: there is no value
    to compare), whatever the operator: test existence with ``Compare.missing``/``exists``.
    One branch may not write a key twice (two puts, or a put inside a delete's range):
    :class:`StoreError`. Every write of the controller is a txn that
    compares the controller key (the fencing token, DESIGN.md).

Leases
    ``grant(ttl)`` returns a lease that lives ``ttl`` seconds after its last keepalive (etcd
    rounds ``ttl`` up to its minimum, ``ceil(1.5 x election timeout)``, and checks expiry every
    0.5 s, so expiry comes up to ~0.5 s late, never early). Keys put with ``lease=id`` are bound
    to it. When it expires or is revoked, all its keys are deleted at one revision and watchers
    get one delete event per key. ``keepalive``, ``lease_info`` and a put on a gone lease raise
    :class:`LeaseNotFound`; ``revoke`` of a gone lease is not an error.

Watches
    ``watch(prefix, start_revision)`` yields every change of a key under ``prefix`` with
    revision >= ``start_revision`` (0: from the next write on), in revision order, within a
    revision in the order applied, each exactly once, across reconnects to other members.
    History older than the store keeps raises :class:`CompactedError` carrying the oldest
    revision still kept. Leaving the ``async for`` (or closing the iterator) ends the watch.

Lost connection and retries
    Each call tries the endpoints in turn until one answers, within the call's timeout, then
    raises :class:`StoreUnavailable` naming every endpoint and its error. Nothing is silently
    dropped: a call either returns its result or raises. Which calls are re-sent after a
    failure whose outcome is unknown (a timeout, a connection lost mid-call):

    - reads, ``grant`` (a twice-granted lease is never used, so it just expires),
      ``keepalive``, ``revoke``, ``lease_info``, ``compact``: always (their effect is the same);
    - ``put`` and ``delete``: always. A repeated put leaves the same value (one extra revision
      and watch event); a repeated delete finds nothing (the count returned may then be 0).
      The price: a put repeated after another client's write overwrites it, so **blind puts are
      only for keys with one writer** (a node's own status, registration, events); a key that
      several writers contend for is written with ``txn``;
    - ``txn``: only when the request certainly did not reach a member able to apply it
      (connection refused, or that member has no leader). Otherwise :class:`StoreUnavailable`
      with ``maybe_applied=True``: the caller re-reads and decides again (a retried
      compare-and-swap could report failure for a write that in fact succeeded).

    This is etcd's own Go client's policy (``clientv3`` retries mutations only when the request
    was never sent) relaxed for put/delete on single-writer keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

CompareTarget = Literal["value", "version", "create_revision", "mod_revision"]
CompareOp = Literal["==", "!=", "<", ">"]
EventKind = Literal["put", "delete"]


@dataclass(frozen=True)
class KeyValue:
    """A key as stored. ``lease`` is 0 when the key is not bound to a lease."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class RangeResult:
    """Keys under a prefix, sorted by key, read at store revision ``revision`` (watch from
    ``revision + 1`` to miss nothing after this read)."""

    kvs: list[KeyValue]
    revision: int


@dataclass(frozen=True)
class WatchEvent:
    """One change. ``value`` is empty for deletes. ``revision`` is the revision of the change
    (the key's new ``mod_revision``). ``prev`` is the key before the change, when the watch
    asked for it (``prev_kv=True``) and the key existed (and, on etcd, was not compacted).
    ``kv``: the key as stored after a put (None for a delete), so that a watcher can keep a
    copy of a prefix (:class:`corral.agent.view.StoreView`) without reading it again."""

    kind: EventKind
    key: bytes
    value: bytes
    revision: int
    prev: KeyValue | None = None
    kv: KeyValue | None = None

    @property
    def mod_revision(self) -> int:
        return self.revision


@dataclass(frozen=True)
class Compare:
    """``target`` of ``key`` ``op`` ``value``: ``value`` is bytes for the "value" target and an
    int for the others (checked at construction). Bytes compare lexicographically. On a missing
    key, a value compare always fails; the other targets read 0."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: bytes | int

    def __post_init__(self) -> None:
        wants_bytes = self.target == "value"
        if isinstance(self.value, bool) or isinstance(self.value, bytes) != wants_bytes:
            kind = "bytes" if wants_bytes else "an int"
            raise TypeError(f"Compare on {self.target} needs {kind}, got {self.value!r}")
        if self.op not in ("==", "!=", "<", ">"):
            raise ValueError(f"Compare op must be ==, !=, < or >, got {self.op!r}")

    @staticmethod
    def value_is(key: bytes, value: bytes) -> Compare:
        return Compare(key, "value", "==", value)

    @staticmethod
    def missing(key: bytes) -> Compare:
        """The key does not exist (create_revision == 0)."""
        return Compare(key, "create_revision", "==", 0)

    @staticmethod
    def exists(key: bytes) -> Compare:
        return Compare(key, "create_revision", ">", 0)

    @staticmethod
    def unchanged_since(key: bytes, mod_revision: int) -> Compare:
        """Nobody wrote the key since it was read at ``mod_revision`` (optimistic locking)."""
        return Compare(key, "mod_revision", "==", mod_revision)


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    """Delete ``key``, or every key that starts with it when ``prefix``."""

    key: bytes
    prefix: bool = False


Op = Put | Delete


@dataclass(frozen=True)
class TxnResult:
    """``succeeded``: the compares held and the success ops ran; False: the failure ops ran.
    ``revision``: the store revision after the txn (unchanged if its branch wrote nothing)."""

    succeeded: bool
    revision: int

    @property
    def branch(self) -> Literal["success", "failure"]:
        return "success" if self.succeeded else "failure"


@dataclass(frozen=True)
class Lease:
    """A granted lease: ``ttl`` is the TTL in seconds actually granted (may exceed the ask)."""

    id: int
    ttl: int


@dataclass(frozen=True)
class LeaseInfo:
    """A live lease: granted TTL, whole seconds left (truncated), and the keys bound to it."""

    id: int
    ttl: int
    remaining: int
    keys: tuple[bytes, ...]


class Store(Protocol):
    """An etcd-like key-value store. The module docstring is the contract of every call."""

    async def get(self, key: bytes) -> KeyValue | None:
        """The key, or None when it does not exist. Linearizable."""
        ...

    async def range(self, prefix: bytes, *, end: bytes | None = None) -> RangeResult:
        """Every key starting with ``prefix`` (b"": all), sorted, with the read revision.
        With ``end``: every key ``prefix <= key < end`` instead (a span, e.g. the keys a
        role may read: etcd refuses a read of any key outside them)."""
        ...

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Store ``value`` (bound to ``lease`` if not 0); return the new revision. Blind and
        possibly repeated on failover: only for keys with a single writer.
        Raises :class:`LeaseNotFound` if ``lease`` is gone."""
        ...

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete the key (or every key under the prefix); return how many were deleted (0 for
        a missing key, which is not an error)."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Compare-and-swap (see the module docstring). Raises :class:`LeaseNotFound` if a put
        of the chosen branch names a gone lease (and nothing is applied)."""
        ...

    async def grant(self, ttl: int) -> Lease:
        """A new lease of at least ``ttl`` seconds."""
        ...

    async def keepalive(self, lease_id: int) -> int:
        """Renew the lease for its full TTL; return the TTL. :class:`LeaseNotFound` if gone."""
        ...

    async def revoke(self, lease_id: int) -> None:
        """End the lease now: its keys are deleted (delete events). A gone lease is fine."""
        ...

    async def lease_info(self, lease_id: int) -> LeaseInfo:
        """TTL, time left and keys of a live lease. :class:`LeaseNotFound` if gone."""
        ...

    def watch(
        self, prefix: bytes, start_revision: int, *, prev_kv: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Changes under ``prefix`` from ``start_revision`` on (see the module docstring)."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision`` (watches from an older revision then raise
        :class:`CompactedError`). Compacting at or below an earlier compaction does nothing; a
        revision above the current one raises :class:`StoreError`."""
        ...

    async def close(self) -> None:
        """Release connections and end open watches. Later calls raise :class:`StoreError`."""
        ...


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's ``range_end``);
    ``b"\\x00"`` (etcd: "to the end") when no such key exists, e.g. for ``b""``."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"
