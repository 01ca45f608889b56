"""Lease renewals over etcd's HTTP/JSON gateway, on one kept-open HTTP/1.1 connection with h11.

Private to :mod:`corral.store.etcd`. Why not gRPC for this one call: an idle agent renews its
lease two and a half times a second, and through grpcio each renewal wakes gRPC's event-engine
thread and then the event loop for the completion (measured: the event-engine thread alone was
~0.25 % of a core, a fifth of an idle agent). Over the gateway a renewal is one ``write`` and one
wake of the event loop when the answer arrives; every other call stays on gRPC.

Contract of :class:`LeaseRenewer`:

- It talks to one endpoint, over TLS when given an ``ssl`` context (the context carries the
  client certificate that etcd's ``--client-cert-auth`` requires). :meth:`renew` sends
  ``POST /v3/lease/keepalive`` with the lease ID and etcd's require-leader flag
  (``Grpc-Metadata-hasleader``: a member without a leader refuses at once), and returns the
  TTL of the first answer line; ``0`` means the lease is gone (etcd leaves ``TTL`` out then).
- One request at a time on the connection (HTTP/1.1 without pipelining); concurrent renewals
  queue. The connection opens on the first renewal and is reused; the end of an answer that
  arrives after its first line is read before the next request.
- Time is bounded by the caller (``asyncio.timeout``). Any failure (refused, reset, closed,
  malformed answer, timeout, cancellation) closes the connection, so a late answer can never be
  taken for the next request's; the next renewal connects again. Errors raise
  :class:`GatewayError` (an etcd error answer: its gRPC code and message) or ``OSError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from ssl import SSLContext
from typing import Any

import h11

PATH = "/v3/lease/keepalive"
READ_CHUNK = 16384
MAX_ANSWER = 65536
UNAVAILABLE = 14


class GatewayError(Exception):
    """etcd's gateway answered with an error (``code`` is the gRPC status code), or the
    connection ended before an answer (``code`` UNAVAILABLE)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LeaseRenewer:
    """Renewals to one endpoint (see the module contract)."""

    def __init__(self, host: str, port: int, *, ssl: SSLContext | None = None) -> None:
        """``ssl``: over TLS with this client context (its certificate is presented)."""
        self.host, self.port = host, port
        self._ssl = ssl
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn: h11.Connection | None = None
        self._tail = False  # the previous answer's end is still to be read

    async def renew(self, lease_id: int) -> int:
        async with self._lock:
            try:
                return await self._renew(lease_id)
            except BaseException:
                self.close()
                raise

    async def _renew(self, lease_id: int) -> int:
        if self._conn is not None and self._tail:
            await self._finish()
        if self._conn is None or self._conn.our_state is not h11.IDLE:
            self.close()
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl
            )
            self._conn = h11.Connection(h11.CLIENT)
        assert self._writer is not None
        conn = self._conn
        body = json.dumps({"ID": str(lease_id)}).encode()
        headers = [
            ("Host", f"{self.host}:{self.port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Grpc-Metadata-hasleader", "true"),
        ]
        data = conn.send(h11.Request(method="POST", target=PATH, headers=headers)) or b""
        data += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        self._writer.write(data)
        return _ttl(await self._first_line())

    async def _first_line(self) -> dict[str, Any]:
        """The first JSON line of the answer; the rest is left for :meth:`_finish`."""
        status = 0
        buffered = b""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                buffered += event.data
                if b"\n" in buffered or len(buffered) > MAX_ANSWER:
                    self._tail = True
                    break
            elif isinstance(event, h11.EndOfMessage):
                self._tail = False
                break
        line = buffered.split(b"\n", 1)[0].strip()
        try:
            doc = json.loads(line)
        except ValueError:
            raise GatewayError(UNAVAILABLE, f"HTTP {status}: not a JSON answer") from None
        if not isinstance(doc, dict):
            raise GatewayError(UNAVAILABLE, f"HTTP {status}: unexpected answer")
        return doc

    async def _finish(self) -> None:
        """Read the end of the previous answer (normally already in our buffer)."""
        while not isinstance(await self._next_event(), h11.EndOfMessage):
            pass
        self._tail = False

    async def _next_event(self) -> Any:
        conn, reader = self._conn, self._reader
        assert conn is not None and reader is not None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise GatewayError(UNAVAILABLE, f"malformed HTTP answer: {exc}") from None
            if event is h11.NEED_DATA:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    raise GatewayError(UNAVAILABLE, "connection closed by etcd")
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise GatewayError(UNAVAILABLE, "connection closed by etcd")
            if isinstance(event, h11.EndOfMessage):
                self._next_cycle()
            return event

    def _next_cycle(self) -> None:
        """Ready the connection for the next request, if etcd keeps it open."""
        conn = self._conn
        if conn is not None and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()

    def close(self) -> None:
        """Drop the connection (no I/O to wait for); the next renewal opens a new one."""
        writer, self._writer = self._writer, None
        self._reader = self._conn = None
        self._tail = False
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()


def _ttl(doc: dict[str, Any]) -> int:
    """The TTL of a keepalive answer line; raises :class:`GatewayError` for an error line."""
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("grpc_code", error.get("code"))
        code = code if isinstance(code, int) else UNAVAILABLE
        raise GatewayError(code, str(error.get("message", "error")))
    result = doc.get("result")
    if not isinstance(result, dict):
        raise GatewayError(UNAVAILABLE, "keepalive answer without a result")
    try:
        return int(result.get("TTL", 0))
    except (TypeError, ValueError):
        raise GatewayError(UNAVAILABLE, f"keepalive answer with a bad TTL: {result!r}") from None
