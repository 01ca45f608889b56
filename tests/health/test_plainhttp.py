"""The h11 path of http:// checks against real sockets that misbehave in the ways a sick
service does: garbage, a close before the answer, a body in another charset, a slow answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from corral.drivers.base import NodeContext
from corral.health.checks import Checker
from corral.health.plainhttp import BadUrl, HttpCheckError, fetch
from corral.spec import HealthCheck

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
NODE = NodeContext("n1", "127.0.0.1")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answering(raw: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handler


async def check(port: int, **http: object) -> tuple[str, str]:
    spec = HealthCheck.model_validate({"http": {"url": f"http://127.0.0.1:{port}/x?y=1", **http}})
    outcome = await Checker().run(spec, NODE)
    return outcome.status, outcome.detail


async def test_status_and_body_with_the_request_a_server_expects(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []
    body = "état: prêt".encode("latin-1")
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    port = await serve(answering(raw, seen))
    assert await check(port, body="prêt") == (
        "ok",
        f"HTTP 200 from http://127.0.0.1:{port}/x?y=1 containing 'prêt'",
    )
    request = seen[0].decode()
    assert request.startswith("GET /x?y=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{port}" in request.lower()
    assert "connection: close" in request.lower()


async def test_post_sends_an_empty_body(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []
    port = await serve(answering(b"HTTP/1.1 204 No Content\r\n\r\n", seen))
    status, _ = await check(port, method="POST", status=[204])
    assert status == "ok"
    assert b"content-length: 0" in seen[0].lower()


async def test_garbage_instead_of_http_is_critical(serve) -> None:  # type: ignore[no-untyped-def]
    port = await serve(answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    status, detail = await check(port)
    assert status == "critical" and "malformed answer" in detail


async def test_a_close_before_the_answer_is_critical(serve) -> None:  # type: ignore[no-untyped-def]
    port = await serve(answering(b""))
    status, detail = await check(port)
    assert status == "critical", detail


async def test_wrong_status_and_missing_body_are_critical(serve) -> None:  # type: ignore[no-untyped-def]
    port = await serve(answering(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"))
    assert (await check(port))[0] == "critical"
    port = await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"))
    status, detail = await check(port, body="yes")
    assert status == "critical" and "lacks 'yes'" in detail


async def test_a_hung_server_times_out(serve) -> None:  # type: ignore[no-untyped-def]
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    port = await serve(hang)
    spec = HealthCheck.model_validate(
        {"http": f"http://127.0.0.1:{port}/", "timeout": 0.2, "interval": 1}
    )
    outcome = await Checker().run(spec, NODE)
    assert outcome.status == "timeout" and outcome.duration < 1.0


async def test_refused_and_unsendable_urls() -> None:
    with pytest.raises(HttpCheckError, match="connection refused"):
        await fetch("GET", "http://127.0.0.1:1/", 100, want_body=False)
    with pytest.raises(BadUrl):
        await fetch("GET", "http://127.0.0.1:80/a b", 100, want_body=False)
    with pytest.raises(BadUrl):
        await fetch("GET", "http:///nohost", 100, want_body=False)
