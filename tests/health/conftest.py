"""Real targets for health checks, all on 127.0.0.1: a threaded HTTP server with fixed and
switchable answers, a separate server process (to SIGSTOP), TCP listeners, a closed port.

Every fixture stops what it started (by pid or by object), also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import NodeContext

PLUGINS = Path("/usr/lib/nagios/plugins")
HANG_LIMIT = 30.0  # a hanging handler gives up after this, even if the test never releases it


@dataclass
class Behaviour:
    """What ``/switch`` does now; tests change it while a monitor runs."""

    status: int = 200
    body: str = "all good"
    hang: bool = False
    hits: int = 0


@dataclass
class HttpTarget:
    port: int
    switch: Behaviour = field(default_factory=Behaviour)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    target: HttpTarget

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) leaves a broken pipe: expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: str, charset: str = "utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"text/plain; charset={charset}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _hang(self) -> None:
        self.server.target.release.wait(HANG_LIMIT)

    def do_GET(self) -> None:
        target = self.server.target
        if self.path == "/ok":
            self._answer(200, "all good")
        elif self.path == "/fail":
            self._answer(500, "internal error")
        elif self.path == "/created":
            self._answer(201, "made")
        elif self.path == "/odd-charset":
            self._answer(200, "all good", charset="x-made-up")
        elif self.path == "/hang":
            self._hang()
        elif self.path == "/slow-body":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"partial")
            self.wfile.flush()
            self._hang()
        elif self.path == "/switch":
            target.switch.hits += 1
            if target.switch.hang:
                self._hang()
            else:
                self._answer(target.switch.status, target.switch.body)
        else:
            self._answer(404, "no such page")

    do_HEAD = do_GET
    do_POST = do_GET


@pytest.fixture
def http_target() -> Iterator[HttpTarget]:
    """A threaded HTTP server: /ok 200, /fail 500, /created 201, /odd-charset 200 with an
    unknown charset, /hang never answers,
    /slow-body stalls mid-body, /switch does what ``target.switch`` says."""
    server = _Server(("127.0.0.1", 0), _Handler)
    target = HttpTarget(port=server.server_address[1])
    server.target = target
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield target
    finally:
        target.release.set()  # hanging handlers return
        server.shutdown()
        server.server_close()
        thread.join(5)


_SERVER_SCRIPT = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@dataclass
class ProcessServer:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def process_server() -> Iterator[ProcessServer]:
    """An HTTP server in its own process (answers 200), so a test can SIGSTOP it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield ProcessServer(proc, int(proc.stdout.readline()))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)  # works on a stopped process too
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A listening socket (the kernel completes connections; nobody accepts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def full_listener() -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops new SYNs, so a connect hangs."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket())
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on (bound then closed: loopback answers it with RST)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def node(tmp_path: Path) -> NodeContext:
    return NodeContext("n1", "127.0.0.1", {"zone": "a"}, state_dir=tmp_path)


@pytest.fixture
def plugins() -> Path:
    """Debian's monitoring plugins (``apt-get install monitoring-plugins-basic``)."""
    if not (PLUGINS / "check_dummy").exists() or shutil.which("sh") is None:
        pytest.skip("needs Debian's monitoring-plugins-basic (apt-get install it)")
    return PLUGINS
