"""The API server in its thread (real sockets, a real HTTP client): slow, resetting and
malformed clients cost their own connection only, and never a traceback in the logs."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest

from corral.agent.snapshot import AgentSnapshot, InstanceView, SnapshotBox
from corral.api import ApiServer, ApiStartError, Source, make_app

WEB = InstanceView("web", "web", None, "started", "healthy", "healthy", False, False)


@pytest.fixture
def served() -> Iterator[tuple[ApiServer, SnapshotBox]]:
    box = SnapshotBox()
    server = ApiServer(make_app(Source(box.latest)), "127.0.0.1", 0)
    server.start()
    try:
        yield server, box
    finally:
        server.stop()


def fresh(box: SnapshotBox) -> None:
    box.publish(
        AgentSnapshot(
            "c",
            "n1",
            time.monotonic(),
            time.time(),
            60.0,
            lease=1,
            lease_deadline=time.monotonic() + 60,
            instances=(WEB,),
            resources=frozenset({"web"}),
        )
    )


def url(server: ApiServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()


def test_before_the_first_snapshot_everything_is_503_stale(served) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    for path in ("/v1/health", "/v1/ready", "/v1/health/web"):
        r = httpx.get(url(server, path))
        assert r.status_code == 503 and r.json()["stale"] is True


def test_answers_and_refusals_are_json(served) -> None:  # type: ignore[no-untyped-def]
    server, box = served
    fresh(box)
    assert httpx.get(url(server, "/v1/health/web")).status_code == 200
    r = httpx.get(url(server, "/v1/health/web?role=boss"))
    assert r.status_code == 400 and "role must be one of" in r.json()["reason"]
    r = httpx.get(url(server, "/v1/nowhere"))
    assert r.status_code == 404 and r.json()["reason"] == "no such path: /v1/nowhere"
    r = httpx.post(url(server, "/v1/health"))
    assert r.status_code == 405 and "POST" in r.json()["reason"]
    assert httpx.head(url(server, "/v1/health")).status_code == 200  # HAProxy's HEAD checks


def test_a_slow_client_blocks_nobody(served, caplog) -> None:  # type: ignore[no-untyped-def]
    server, box = served
    fresh(box)
    caplog.set_level(logging.DEBUG)
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the end
        for _ in range(20):
            assert httpx.get(url(server, "/v1/health"), timeout=5).status_code == 200
    finally:
        for s in slow:
            s.close()
    no_tracebacks(caplog)


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or impatient client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_resetting_clients_log_no_traceback(served, caplog) -> None:  # type: ignore[no-untyped-def]
    server, box = served
    fresh(box)
    caplog.set_level(logging.DEBUG)
    for request in (b"GET /v1/health HTTP/1.1\r\nHo", b"GET /v1/health/web HTTP/1.1\r\n"
                    b"Host: x\r\n\r\n", b""):  # fmt: skip
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", server.port))
            if request:
                s.sendall(request)
            reset(s)
    time.sleep(0.2)  # let the server see the resets
    assert httpx.get(url(server, "/v1/health")).status_code == 200
    no_tracebacks(caplog)


def test_malformed_requests_get_400_and_no_traceback(served, caplog) -> None:  # type: ignore[no-untyped-def]
    server, box = served
    fresh(box)
    caplog.set_level(logging.DEBUG)
    for junk in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                 b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"):  # fmt: skip
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(junk)
            assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert httpx.get(url(server, "/v1/health")).status_code == 200
    no_tracebacks(caplog)


def test_a_taken_port_is_a_clear_error(served) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    with pytest.raises(ApiStartError, match=rf"127\.0\.0\.1:{server.port}: Address already"):
        ApiServer(make_app(Source(lambda: None)), "127.0.0.1", server.port).start()


def test_answers_are_not_held_back_by_nagle(served) -> None:  # type: ignore[no-untyped-def]
    """The listening socket says IPPROTO_TCP, so asyncio sets TCP_NODELAY on every accepted
    connection (without it a response waits ~40 ms for the client's delayed ACK)."""
    server, _ = served
    sock = server_socket(server)
    assert sock.proto == socket.IPPROTO_TCP


def server_socket(server: ApiServer) -> socket.socket:
    assert server._server is not None
    (listener,) = server._server.servers
    (sock,) = listener.sockets
    return sock
