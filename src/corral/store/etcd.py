"""The store on a real etcd v3 cluster, through the ``aetcd`` asyncio client.

Contract: :mod:`corral.store.base`. What this backend adds:

- Several endpoints: one gRPC connection at a time; when a call fails with a connection error
  or a timeout the client moves to the next endpoint. Calls whose effect does not change when
  applied twice are retried there, the others raise :class:`StoreUnavailable` at once (outcome
  unknown, see base). After every endpoint failed: :class:`StoreUnavailable` naming each
  endpoint and its error.
- Per-call timeout (``timeout``), so a member that lost its quorum cannot hang a caller.
- Watches re-establish themselves on the next endpoint after a failure and resume at the
  revision they stopped at, skipping events already delivered: no loss, no duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as aex
from aetcd import rpc

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
    prefix_end,
)
from corral.store.errors import CompactedError, LeaseNotFound, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
_CONNECTION_ERRORS = (
    aex.ConnectionFailedError,
    aex.ConnectionTimeoutError,
    aex.InternalError,  # "etcdserver: leader changed" and friends: another member may answer
    asyncio.TimeoutError,
    OSError,
)


_RETRY_CODES = (rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED)


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``http://127.0.0.1:2379`` or ``127.0.0.1:2379`` -> ``("127.0.0.1", 2379)``."""
    rest = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"etcd endpoint {endpoint!r}: expected host:port or http://host:port")
    return host.strip("[]"), int(port)


class EtcdStore:
    """A :class:`~corral.store.base.Store` on etcd. Use from one event loop."""

    def __init__(
        self, endpoints: Sequence[str], *, timeout: float = 2.0, attempt_timeout: float = 1.0
    ) -> None:
        """``timeout`` bounds a whole call; ``attempt_timeout`` one try on one endpoint. A
        request caught in flight by a leader's death can stall on the server for etcd's own
        request timeout (5 s + 2 x election); a fresh request after the election does not, so
        tries are short and repeated."""
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self._endpoints = [parse_endpoint(e) for e in endpoints]
        self._names = list(endpoints)
        self._timeout = timeout
        self._attempt_timeout = min(attempt_timeout, timeout)
        self._index = 0
        self._client: aetcd.Client | None = None
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The endpoint in use now."""
        return self._names[self._index]

    async def _connected(self) -> aetcd.Client:
        if self._closed:
            raise StoreError("store is closed")
        if self._client is None:
            host, port = self._endpoints[self._index]
            client = aetcd.Client(host=host, port=port, timeout=max(1, round(self._timeout)))
            await asyncio.wait_for(client.connect(), self._timeout)
            self._client = client
        return self._client

    async def _rotate(self) -> None:
        client, self._client = self._client, None
        self._index = (self._index + 1) % len(self._endpoints)
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 1.0)
            except Exception:
                log.debug("closing etcd client failed", exc_info=True)

    async def _call(
        self, what: str, fn: Callable[[aetcd.Client], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Run ``fn`` on the current endpoint, moving on to the next on a connection error or
        timeout, until ``timeout`` has passed (during a leader election members answer "no
        leader" at once, for up to ~2 election timeouts). ``retry=False``: give up at the
        first such error, outcome unknown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        errors: dict[str, str] = {}
        attempt = 0
        while True:
            name = self.endpoint
            remaining = min(max(deadline - loop.time(), 0.05), self._attempt_timeout)
            try:
                client = await asyncio.wait_for(self._connected(), remaining)
                return await asyncio.wait_for(fn(client), remaining)
            except (*_CONNECTION_ERRORS, rpc.AioRpcError, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and _cancelling():
                    raise
                if isinstance(exc, rpc.AioRpcError) and exc.code() not in _RETRY_CODES:
                    raise
                errors[name] = _describe(exc)
                await self._rotate()
                if not retry:
                    raise StoreUnavailable(
                        f"etcd {what}: {name}: {errors[name]} (outcome unknown: re-read before "
                        "retrying)"
                    ) from None
            attempt += 1
            if loop.time() >= deadline:
                detail = "; ".join(f"{n}: {e}" for n, e in errors.items())
                raise StoreUnavailable(f"etcd {what}: no endpoint answered in time: {detail}")
            if attempt % len(self._endpoints) == 0:  # every endpoint failed once: breathe
                await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0)))

    # --- Store --------------------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        result = await self._call("get", lambda c: c.get(key))
        return _kv(result) if result is not None else None

    async def range(self, prefix: bytes) -> RangeResult:
        result = await self._call("range", lambda c: c.get_prefix(prefix))
        return RangeResult([_kv(kv) for kv in result], result.header.revision)

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        try:
            result = await self._call("put", lambda c: c.put(key, value, lease=lease or None))
        except aex.ClientError as exc:
            raise _lease_error(exc, lease) from None
        revision: int = result.header.revision
        return revision

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        if prefix:
            result: Any = await self._call("delete", lambda c: c.delete_prefix(key))
            return int(result.deleted)
        deleted = await self._call("delete", lambda c: c.delete(key))
        return 1 if deleted else 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )

        async def run(client: aetcd.Client) -> Any:
            return await client.kvstub.Txn(request, timeout=self._timeout, metadata=client.metadata)

        try:
            response = await self._call("txn", run, retry=False)
        except rpc.AioRpcError as exc:
            raise StoreError(f"etcd txn refused: {exc.details()}") from None
        return TxnResult(bool(response.succeeded), int(response.header.revision))

    async def grant(self, ttl: int) -> Lease:
        lease = await self._call("grant", lambda c: c.lease(ttl))  # a leaked lease expires
        return Lease(int(lease.id), int(lease.ttl))

    async def keepalive(self, lease_id: int) -> int:
        reply = await self._call("keepalive", lambda c: c.refresh_lease(lease_id))
        if reply is None or reply.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return int(reply.TTL)

    async def revoke(self, lease_id: int) -> None:
        async def run(client: aetcd.Client) -> None:
            try:
                await client.revoke_lease(lease_id)
            except aex.ClientError as exc:
                if "not found" not in str(exc):
                    raise

        await self._call("revoke", run)

    async def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        """See base. Resumes at the last delivered revision after any connection failure,
        skipping the keys of that revision already delivered."""
        resume = start_revision
        seen: set[bytes] = set()  # keys delivered at revision `resume` (a txn spans keys)
        failures = 0
        while not self._closed:
            try:
                client = await self._connected()
                watch = await asyncio.wait_for(
                    client.watch_prefix(prefix, start_revision=resume), self._timeout
                )
                failures = 0
                async for event in watch:
                    item = _event(event)
                    if item.revision < resume or (item.revision == resume and item.key in seen):
                        continue
                    if item.revision > resume:
                        resume, seen = item.revision, set()
                    seen.add(item.key)
                    yield item
            except aex.RevisionCompactedError as exc:
                raise CompactedError(int(exc.compacted_revision)) from None
            except asyncio.CancelledError:
                if _cancelling():
                    raise
                # aetcd cancels its own watch tasks when a channel dies: a lost connection,
                # not a request to stop
                failures += 1
                await self._rotate()
                await asyncio.sleep(min(1.0, 0.05 * failures))
            except (*_CONNECTION_ERRORS, aex.ClientError) as exc:
                failures += 1
                log.info(
                    "etcd watch on %s lost (%s); resuming at %d",
                    self.endpoint,
                    _describe(exc),
                    resume,
                )
                await self._rotate()
                # back off a little once every endpoint failed in a row
                await asyncio.sleep(min(1.0, 0.05 * failures) if failures > 1 else 0)

    async def compact(self, revision: int) -> None:
        """Drop history at and below ``revision`` (watches from there raise CompactedError)."""
        await self._call("compact", lambda c: c.compact(revision))

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 2.0)
            except Exception:
                log.debug("closing etcd client failed", exc_info=True)


def _cancelling() -> bool:
    """True when the current task itself is being cancelled (a CancelledError from a library's
    internal task, e.g. aetcd closing a dead channel, is not)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, rpc.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _lease_error(exc: Exception, lease: int) -> Exception:
    if "lease not found" in str(exc):
        return LeaseNotFound(f"lease {lease:x} not found (expired or revoked)")
    return StoreError(f"etcd: {_describe(exc)}")


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=int(kv.lease),
    )


def _event(event: Any) -> WatchEvent:
    key, revision = bytes(event.kv.key), int(event.kv.mod_revision)
    if event.kind == aetcd.EventKind.DELETE:
        return WatchEvent("delete", key, b"", revision)
    return WatchEvent("put", key, bytes(event.kv.value), revision)


_TARGETS = {
    "value": rpc.Compare.VALUE,
    "version": rpc.Compare.VERSION,
    "create_revision": rpc.Compare.CREATE,
    "mod_revision": rpc.Compare.MOD,
}
_OPS = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}


def _compare(c: Compare) -> Any:
    message = rpc.Compare(key=c.key, target=_TARGETS[c.target], result=_OPS[c.op])
    if c.target == "value":
        message.value = c.value if isinstance(c.value, bytes) else str(c.value).encode()
    elif c.target == "version":
        message.version = int(c.value)
    elif c.target == "create_revision":
        message.create_revision = int(c.value)
    else:
        message.mod_revision = int(c.value)
    return message


def _request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key, value=op.value, lease=op.lease))
    assert isinstance(op, Delete)
    end = prefix_end(op.key) if op.prefix else b""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key, range_end=end))
