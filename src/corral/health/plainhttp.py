"""One plain ``http://`` request for a health check, on asyncio streams with h11 (shell).

Why not httpx here: a check is one request on a fresh connection, every second, on every node,
for every service. httpx costs about 2 ms of CPU per such request and 20 MB of resident memory
in every agent; h11 (the sans-I/O HTTP/1.1 state machine httpx itself stands on) over
``asyncio.open_connection`` costs a fraction of it. ``https://`` checks still go through httpx
(TLS, certificates), loaded only when a spec has one.

Contract of :func:`fetch`: it sends ``method`` for ``url`` with ``Connection: close`` (and
``Content-Length: 0`` for POST), reads the status and at most ``limit`` bytes of the body, and
closes the connection. Time is bounded by the caller (``asyncio.timeout``). Errors raise
:class:`HttpCheckError` with a short reason (``connection refused``, ``malformed answer``); a
URL it cannot send raises :class:`BadUrl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

READ_CHUNK = 65536


class HttpCheckError(Exception):
    """The target did not give a usable HTTP answer; the message says why."""


class BadUrl(Exception):
    """The URL cannot be requested (not http://, no host, a bad port or path)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    charset: str | None


def _target(url: str) -> tuple[str, int, str, str]:
    """(host, port, request target, Host header) of an ``http://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BadUrl(f"{url}: not an http:// URL with a host")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise BadUrl(f"{url}: {exc}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return parts.hostname, port, target, host_header


def _charset(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"content-type":
            for param in value.decode("latin-1").split(";")[1:]:
                key, _, val = param.strip().partition("=")
                if key.lower() == "charset" and val:
                    return val.strip('"')
    return None


def refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    )


async def fetch(method: str, url: str, limit: int, *, want_body: bool) -> Answer:
    """One request (see the module contract)."""
    host, port, target, host_header = _target(url)
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", host_header), ("User-Agent", "corral-check"), ("Connection", "close")]
    if method == "POST":
        headers.append(("Content-Length", "0"))
    try:
        request = conn.send(h11.Request(method=method, target=target, headers=headers))
        request = (request or b"") + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError as exc:
        raise BadUrl(f"{url}: cannot be requested ({exc})") from None
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise HttpCheckError("connection refused" if refused(exc) else str(exc)) from None
    try:
        writer.write(request)
        await writer.drain()
        return await _answer(conn, reader, limit, want_body, method == "HEAD")
    except h11.RemoteProtocolError as exc:
        raise HttpCheckError(f"malformed answer ({exc})") from None
    except OSError as exc:
        raise HttpCheckError(
            "connection reset" if exc.errno == errno.ECONNRESET else str(exc)
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _answer(
    conn: h11.Connection, reader: asyncio.StreamReader, limit: int, want_body: bool, head: bool
) -> Answer:
    status: int | None = None
    charset: str | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await reader.read(READ_CHUNK)
            conn.receive_data(chunk)  # b"" = the peer closed
            continue
        if isinstance(event, h11.Response):
            status, charset = event.status_code, _charset(list(event.headers))
            if not want_body or head:
                break
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) >= limit:
                break
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if status is None:
        raise HttpCheckError("connection closed before an HTTP answer")
    return Answer(status, bytes(body[:limit]), charset)
