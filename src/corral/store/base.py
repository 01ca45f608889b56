"""The store contract: what corral needs of etcd, and what the in-memory twin must match.

Semantics are etcd v3's, stated here so that both backends (``etcd.py``, ``memory.py``) and
their callers agree:

- Revisions: one store-wide counter; every successful write (put, delete of an existing key,
  a transaction with at least one effective write) increments it once. A fresh store is at
  revision 1. Each key carries ``create_revision``, ``mod_revision`` and ``version`` (1 on
  creation, +1 per put; a deleted key no longer exists and a new put starts at version 1).
- Linearizable: ``get``, ``range``, ``put``, ``delete``, ``txn``, ``grant``, ``revoke`` see and
  produce a single global order (etcd: reads go through the raft leader; a member cut off from
  its quorum times out instead of answering stale data).
- ``txn`` is the compare-and-swap: all ``compares`` hold -> ``success`` ops run, else
  ``failure`` ops run, atomically, at one revision. Every controller write is a ``txn`` that
  compares the controller key (fencing token).
- Leases: ``grant(ttl)`` returns a lease that lives ``ttl`` seconds after the last keepalive
  (etcd may round up and checks expiry every 0.5 s). When it expires or is revoked, every key
  put with it is deleted at once (one revision) and watchers see delete events.
  ``keepalive`` on an expired or revoked lease raises :class:`LeaseNotFound`.
- ``watch(prefix, start_revision)`` yields every event on keys under ``prefix`` with revision
  >= ``start_revision``, in revision order, each exactly once, across reconnects. If that
  history was compacted it raises :class:`CompactedError` (the caller re-reads with ``range``
  and watches from the range's revision + 1).
- Lost connection: a call tries every endpoint before raising :class:`StoreUnavailable`.
  Reads, ``put``, ``delete``, ``keepalive``, ``revoke`` and ``grant`` are retried on the next
  endpoint within the call's timeout (applied twice, their effect is the same; a twice-granted
  lease just expires); ``txn`` is not (a retried compare-and-swap could report failure for a
  write that was applied), so its ``StoreUnavailable`` means "outcome unknown".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

CompareTarget = Literal["value", "version", "create_revision", "mod_revision"]
CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the range was read at


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    key: bytes
    value: bytes  # empty for deletes
    revision: int  # the revision of this change


@dataclass(frozen=True)
class Compare:
    """``target`` of ``key`` ``op`` ``value``. A missing key has value b"", version 0,
    create_revision 0 and mod_revision 0 (so ``Compare.missing(k)`` is create_revision == 0)."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: bytes | int

    @staticmethod
    def value_is(key: bytes, value: bytes) -> Compare:
        return Compare(key, "value", "==", value)

    @staticmethod
    def missing(key: bytes) -> Compare:
        return Compare(key, "create_revision", "==", 0)

    @staticmethod
    def unchanged_since(key: bytes, mod_revision: int) -> Compare:
        return Compare(key, "mod_revision", "==", mod_revision)


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: bytes
    prefix: bool = False


Op = Put | Delete


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store revision after the transaction


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int  # granted TTL in seconds


class Store(Protocol):
    """An etcd-like key-value store (see the module docstring for the contract)."""

    async def get(self, key: bytes) -> KeyValue | None: ...

    async def range(self, prefix: bytes) -> RangeResult: ...

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Store ``value``; return the new revision."""
        ...

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete the key (or every key under the prefix); return how many were deleted."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult: ...

    async def grant(self, ttl: int) -> Lease: ...

    async def keepalive(self, lease_id: int) -> int:
        """Renew the lease; return its TTL. Raises :class:`LeaseNotFound` if it is gone."""
        ...

    async def revoke(self, lease_id: int) -> None:
        """End the lease now (its keys are deleted). Revoking a gone lease is not an error."""
        ...

    def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]: ...

    async def close(self) -> None: ...


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"
