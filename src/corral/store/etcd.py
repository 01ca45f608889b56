"""The store on a real etcd v3 cluster, through the ``aetcd`` asyncio client.

The contract, including which calls are re-sent after a failure, is :mod:`corral.store.base`.
What this backend adds:

- Several endpoints, one gRPC connection at a time. When a call fails with a connection error,
  a timeout or "no leader", the client moves to the next endpoint and, when the call may be
  re-sent (see base), tries again there, until the call's ``timeout`` has passed; then
  :class:`StoreUnavailable` names every endpoint with its last error. Refusals (a gone lease,
  a malformed txn) are answers, not failures: they raise at once.
- Every request carries etcd's "require leader" flag: a member cut off from its quorum refuses
  at once and the client moves on, instead of waiting out etcd's own request timeout.
- Per-try timeout ``attempt_timeout``: a request caught by a leader's death can stall on the
  server for etcd's request timeout (5 s + 2 x election timeout), while a fresh request to
  another member after the election succeeds at once, so tries are short and repeated.
- Watches re-establish themselves on the next endpoint and resume at the revision of the last
  event they delivered, skipping the keys of that revision already delivered (a txn writes
  several keys at one revision): no loss, no duplicates. A watch that finds no endpoint for
  ``timeout`` raises :class:`StoreUnavailable`.
- Lease renewals go over etcd's HTTP/JSON gateway on one kept-open HTTP/1.1 connection to the
  endpoint in use (:mod:`corral.store._etcd_http`: one write and one wake of the event loop
  per renewal, where gRPC also woke its own thread; the idle agent renews 2.5 times a second).
  A renewal that fails or times out there is re-sent to the next endpoint, like any repeatable
  call; the contract of :meth:`EtcdStore.keepalive` is unchanged.
- The connection being replaced is closed only after ``timeout``, so calls still running on it
  (other tasks share the store) finish or time out on their own instead of being cut.
- TLS (``tls``: :class:`~corral.store.tls.TlsFiles`): gRPC over a secure channel and the
  gateway renewals over TLS, both presenting the client certificate (etcd's client-certificate
  auth); ``https://`` endpoints need it, ``http://`` ones refuse it (bare ``host:port`` follows
  ``tls``). The files are read at each new connection, so a re-issued certificate is picked up.
- Password authentication (``username``/``password``); a request etcd's RBAC refuses raises
  :class:`PermissionDenied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as aex
from aetcd import rpc

from corral.store import _etcd_wire as wire
from corral.store._etcd_http import GatewayError, LeaseRenewer
from corral.store._etcd_tls import TlsClient
from corral.store._etcd_wire import REQUIRE_LEADER, Failure
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
    prefix_end,
)
from corral.store.errors import (
    CompactedError,
    LeaseNotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
)
from corral.store.tls import TlsFiles

log = logging.getLogger(__name__)
T = TypeVar("T")
Attempt = Callable[[aetcd.Client, float], Awaitable[T]]


async def renew_over_gateway(
    endpoints: Sequence[str], lease_id: int, tls: TlsFiles | None = None
) -> int:
    """One renewal of ``lease_id`` over etcd's HTTP gateway, without a store: each endpoint in
    turn on a fresh connection (the lease guard's renewals during a handover; over TLS with
    ``tls``). Returns the TTL (0: the lease is gone); raises ``OSError`` or
    :class:`GatewayError` when none answered. The caller bounds the time."""
    error: Exception = OSError("no endpoint")
    for endpoint in endpoints:
        try:
            host, port = parse_endpoint(endpoint, tls=tls is not None)
            context = tls.renewal().ssl_context() if tls is not None else None
        except (OSError, ValueError) as exc:
            error = exc
            continue
        renewer = LeaseRenewer(host, port, ssl=context)
        try:
            return await renewer.renew(lease_id)
        except (OSError, GatewayError, ValueError) as exc:
            error = exc
        finally:
            renewer.close()
    raise error


def parse_endpoint(endpoint: str, *, tls: bool = False) -> tuple[str, int]:
    """``http://127.0.0.1:2379`` or ``127.0.0.1:2379`` -> ``("127.0.0.1", 2379)``; with
    ``tls``, ``https://`` or bare. A scheme that disagrees with ``tls`` is a ``ValueError``."""
    if endpoint.startswith("https://") and not tls:
        raise ValueError(f"etcd endpoint {endpoint!r} is https: give the TLS files (ca/cert/key)")
    if endpoint.startswith("http://") and tls:
        raise ValueError(f"etcd endpoint {endpoint!r} is plain http, but TLS files are given")
    rest = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"etcd endpoint {endpoint!r}: expected host:port or http(s)://host:port")
    return host.strip("[]"), int(port)


def etcd_client(
    endpoint: str,
    *,
    tls: TlsFiles | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 5.0,
) -> aetcd.Client:
    """An unconnected ``aetcd.Client`` of one endpoint, over TLS presenting ``tls`` when given
    (else etcd password auth with ``username``/``password``, if any): for the calls the
    :class:`~corral.store.base.Store` protocol leaves out, etcd's auth API
    (:mod:`corral.auth.etcdauth`). ``ValueError`` when the scheme disagrees with ``tls``."""
    host, port = parse_endpoint(endpoint, tls=tls is not None)
    if tls is not None:
        return TlsClient(tls=tls, host=host, port=port, timeout=timeout)
    return aetcd.Client(host=host, port=port, username=username, password=password,
                        timeout=timeout)  # fmt: skip


class EtcdStore:
    """A :class:`~corral.store.base.Store` on etcd. Use it from one event loop; any number of
    tasks may share it."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 2.0,
        attempt_timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """``timeout`` bounds a whole call (all its tries); ``attempt_timeout`` one try on one
        endpoint. ``username``/``password``: etcd password auth (each new connection logs in
        and sends the token; an expired token moves on to a fresh connection); ``tls``: connect
        over TLS with this identity."""
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self.tls = tls
        self._addresses = [parse_endpoint(e, tls=tls is not None) for e in endpoints]
        self._names = list(endpoints)
        self._timeout = timeout
        self._attempt_timeout = min(attempt_timeout, timeout)
        self._index = 0
        self._generation = 0  # bumped on every move to another endpoint
        self._client: aetcd.Client | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._renewer: tuple[aetcd.Client, LeaseRenewer] | None = None
        self._closed = False
        if (username is None) != (password is None):
            raise ValueError("etcd password auth needs both a user name and a password")
        self._credentials = {"username": username, "password": password} if username else {}

    @property
    def endpoint(self) -> str:
        """The endpoint in use now."""
        return self._names[self._index]

    @property
    def endpoints(self) -> list[str]:
        return list(self._names)

    # --- connection and retries ---------------------------------------------------------------

    async def _current(self) -> tuple[int, str, aetcd.Client]:
        """(generation, endpoint name, client) of the endpoint in use."""
        if self._closed:
            raise StoreError("etcd store is closed")
        client = self._client
        if client is None:
            host, port = self._addresses[self._index]
            settings: dict[str, Any] = {
                "host": host,
                "port": port,
                "timeout": self._attempt_timeout,
                "options": wire.CHANNEL_OPTIONS,
                **self._credentials,
            }
            if self.tls is None:
                client = aetcd.Client(**settings)
            else:
                client = TlsClient(tls=self.tls, **settings)
            client.metadata = REQUIRE_LEADER  # read by connect() for the watch stream
            self._client = client
        generation, name = self._generation, self.endpoint
        await client.connect()  # no I/O without credentials: gRPC channels connect lazily
        if client.metadata != REQUIRE_LEADER and REQUIRE_LEADER[0] not in client.metadata:
            # a login replaced the metadata with its token: send both (watch streams keep the
            # token only: aetcd gives them the metadata of the login)
            client.metadata = (*REQUIRE_LEADER, *client.metadata)
        return generation, name, client

    def _rotate(self, generation: int) -> None:
        """Move to the next endpoint, unless another task already moved on since
        ``generation`` (concurrent failures must not skip endpoints)."""
        if generation != self._generation or self._closed:
            return
        old, self._client = self._client, None
        self._index = (self._index + 1) % len(self._addresses)
        self._generation += 1
        if old is not None:
            task = asyncio.create_task(self._retire(old, self._timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(client: aetcd.Client, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 1.0)

    async def _call(self, what: str, attempt: Attempt[T], *, repeat: bool = True) -> T:
        """Run ``attempt(client, seconds)`` on the current endpoint, moving to the next one on a
        failure until ``timeout`` has passed. ``repeat=False`` (txn): re-send only when the
        failed try certainly was not applied."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        errors: dict[str, str] = {}
        tries = 0
        while True:
            budget = max(0.05, min(self._attempt_timeout, deadline - loop.time()))
            generation, name = self._generation, self.endpoint
            try:
                # in the try: with credentials, connecting logs in (I/O that may fail)
                generation, name, client = await self._current()
                # gRPC gets the same deadline; ours is a backstop for a stuck channel (a scope,
                # not wait_for: no extra task per call)
                async with asyncio.timeout(budget + 0.25):
                    return await attempt(client, budget)
            except Exception as exc:
                failure = wire.classify(exc)
                if failure is Failure.FATAL:
                    raise _refused(what, name, exc) from None
                if name not in errors or not wire.vague(exc):  # keep the telling error
                    errors[name] = wire.describe(exc)
                self._rotate(generation)
                if failure is Failure.UNKNOWN and not repeat:
                    raise StoreUnavailable(
                        f"etcd {what}: {name}: {errors[name]}; outcome unknown (it may have "
                        "been applied): re-read before deciding again",
                        maybe_applied=True,
                    ) from None
            tries += 1
            if loop.time() >= deadline:
                detail = "; ".join(f"{n}: {e}" for n, e in errors.items())
                raise StoreUnavailable(
                    f"etcd {what}: no endpoint answered within {self._timeout:g}s: {detail}"
                )
            if tries % len(self._addresses) == 0:  # every endpoint failed once: breathe
                await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0.0)))

    # --- key-value ----------------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        async def attempt(client: aetcd.Client, budget: float) -> Any:
            request = rpc.RangeRequest(key=key)
            return await client.kvstub.Range(request, timeout=budget, metadata=client.metadata)

        response = await self._call("get", attempt)
        return wire.to_kv(response.kvs[0]) if response.kvs else None

    async def range(self, prefix: bytes, *, end: bytes | None = None) -> RangeResult:
        last = prefix_end(prefix) if end is None else end

        async def attempt(client: aetcd.Client, budget: float) -> Any:
            request = rpc.RangeRequest(key=prefix or b"\x00", range_end=last)
            return await client.kvstub.Range(request, timeout=budget, metadata=client.metadata)

        response = await self._call("range", attempt)
        return RangeResult([wire.to_kv(kv) for kv in response.kvs], int(response.header.revision))

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        request = wire.put_request(Put(key, value, lease))

        async def attempt(client: aetcd.Client, budget: float) -> Any:
            return await client.kvstub.Put(request, timeout=budget, metadata=client.metadata)

        response = await self._call("put", attempt)
        return int(response.header.revision)

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        request = wire.delete_request(Delete(key, prefix))

        async def attempt(client: aetcd.Client, budget: float) -> Any:
            return await client.kvstub.DeleteRange(
                request, timeout=budget, metadata=client.metadata
            )

        response = await self._call("delete", attempt)
        return int(response.deleted)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        request = wire.txn_request(list(compares), list(success), list(failure))

        async def attempt(client: aetcd.Client, budget: float) -> Any:
            return await client.kvstub.Txn(request, timeout=budget, metadata=client.metadata)

        response = await self._call("txn", attempt, repeat=False)
        return TxnResult(bool(response.succeeded), int(response.header.revision))

    async def compact(self, revision: int) -> None:
        async def attempt(client: aetcd.Client, budget: float) -> None:
            request = rpc.CompactionRequest(revision=revision)
            try:
                await client.kvstub.Compact(request, timeout=budget, metadata=client.metadata)
            except rpc.AioRpcError as exc:
                if "has been compacted" not in (exc.details() or ""):
                    raise  # "future revision" and the like: refused, see _refused
                # already compacted at or past `revision`: nothing to do (contract)

        await self._call("compact", attempt)

    # --- leases -------------------------------------------------------------------------------

    async def grant(self, ttl: int) -> Lease:
        async def attempt(client: aetcd.Client, budget: float) -> Any:
            request = rpc.LeaseGrantRequest(TTL=ttl, ID=0)
            return await client.leasestub.LeaseGrant(
                request, timeout=budget, metadata=client.metadata
            )

        response = await self._call("grant", attempt)
        if response.error:
            raise StoreError(f"etcd grant refused: {response.error}")
        return Lease(int(response.ID), int(response.TTL))

    async def keepalive(self, lease_id: int) -> int:
        """See :mod:`corral.store.base`. Over etcd's HTTP gateway on a kept-open connection to
        the endpoint in use (see :mod:`corral.store._etcd_http`); a renewal that fails or times
        out is re-sent, like any repeatable call, to the next endpoint."""

        async def attempt(client: aetcd.Client, budget: float) -> int:
            async with asyncio.timeout(budget):
                return await self._lease_renewer(client).renew(lease_id)

        ttl = await self._call("keepalive", attempt)
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return ttl

    def _lease_renewer(self, client: aetcd.Client) -> LeaseRenewer:
        """The renewer of the endpoint ``client`` talks to; the one of an endpoint the store
        moved away from is closed."""
        if self._renewer is not None and self._renewer[0] is client:
            return self._renewer[1]
        if self._renewer is not None:
            self._renewer[1].close()
        host, port = self._addresses[self._index]
        context = self.tls.renewal().ssl_context() if self.tls else None
        renewer = LeaseRenewer(host, port, ssl=context)
        self._renewer = (client, renewer)
        return renewer

    async def revoke(self, lease_id: int) -> None:
        async def attempt(client: aetcd.Client, budget: float) -> None:
            request = rpc.LeaseRevokeRequest(ID=lease_id)
            try:
                await client.leasestub.LeaseRevoke(
                    request, timeout=budget, metadata=client.metadata
                )
            except rpc.AioRpcError as exc:
                if exc.code() != rpc.StatusCode.NOT_FOUND:
                    raise  # a gone lease is fine (contract); anything else is not

        await self._call("revoke", attempt)

    async def lease_info(self, lease_id: int) -> LeaseInfo:
        async def attempt(client: aetcd.Client, budget: float) -> Any:
            request = rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=True)
            return await client.leasestub.LeaseTimeToLive(
                request, timeout=budget, metadata=client.metadata
            )

        response = await self._call("lease_info", attempt)
        if response.TTL < 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        keys = tuple(sorted(bytes(k) for k in response.keys))
        return LeaseInfo(lease_id, int(response.grantedTTL), int(response.TTL), keys)

    # --- watches ------------------------------------------------------------------------------

    async def watch(
        self, prefix: bytes, start_revision: int, *, prev_kv: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """See :mod:`corral.store.base`. Survives the loss of the member it reads from (see the
        module docstring)."""
        resume = start_revision if start_revision > 0 else await self._revision() + 1
        seen: set[bytes] = set()  # keys already delivered at revision `resume`
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        errors: dict[str, str] = {}
        while not self._closed:
            generation, name, client = await self._current()
            stream = None
            try:
                stream = await asyncio.wait_for(
                    client.watch(
                        prefix or b"\x00",
                        range_end=prefix_end(prefix),
                        start_revision=resume,
                        prev_kv=prev_kv,
                    ),
                    self._attempt_timeout + 0.25,
                )
                failing_since = None
                async for raw in stream:
                    event = wire.to_event(raw)
                    if event.revision < resume or (event.revision == resume and event.key in seen):
                        continue  # delivered before the stream was re-established
                    if event.revision > resume:
                        resume, seen = event.revision, set()
                    seen.add(event.key)
                    yield event
                if self._closed or generation != self._generation:
                    continue  # its connection was retired or closed: resume on the current one
                raise StoreUnavailable("watch stream ended by the server")
            except aex.RevisionCompactedError as exc:
                raise CompactedError(int(exc.compacted_revision)) from None
            except Exception as exc:
                if wire.classify(exc) is Failure.FATAL and not isinstance(exc, StoreUnavailable):
                    raise _refused("watch", name, exc) from None
                errors[name] = wire.describe(exc)
                self._rotate(generation)
                failing_since = failing_since or loop.time()
                if loop.time() - failing_since >= self._timeout:
                    detail = "; ".join(f"{n}: {e}" for n, e in errors.items())
                    raise StoreUnavailable(
                        f"etcd watch of {prefix!r}: no endpoint answered within "
                        f"{self._timeout:g}s (delivered up to revision {resume}): {detail}"
                    ) from None
                log.info("etcd watch on %s lost (%s); resuming at %d", name, errors[name], resume)
                await asyncio.sleep(0.05)
            finally:
                if stream is not None:
                    # bounded: aetcd queues the cancel request, and a dead stream never drains
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(stream.cancel(), 1.0)

    async def _revision(self) -> int:
        """The store's current revision (a count-only read: no data is sent)."""

        async def attempt(client: aetcd.Client, budget: float) -> Any:
            request = rpc.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True)
            return await client.kvstub.Range(request, timeout=budget, metadata=client.metadata)

        return int((await self._call("revision", attempt)).header.revision)

    async def close(self) -> None:
        """Close every connection (open watches end)."""
        self._closed = True
        client, self._client = self._client, None
        if self._renewer is not None:
            self._renewer[1].close()
            self._renewer = None
        for task in list(self._retiring):
            task.cancel()  # closes its client now (see _retire)
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def _refused(what: str, endpoint: str, exc: BaseException) -> StoreError:
    """An answer that is not a failure to reach etcd, as a store error."""
    error = wire.rpc_error(exc)
    details = (error.details() if error is not None else str(exc)) or ""
    if "lease not found" in details:
        return LeaseNotFound(f"etcd {what}: lease not found (expired or revoked)")
    if wire.denied(exc):
        return PermissionDenied(f"etcd {what} refused by {endpoint}: {wire.describe(exc)}")
    return StoreError(f"etcd {what} refused by {endpoint}: {wire.describe(exc)}")
