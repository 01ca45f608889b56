"""The API's HTTP server: uvicorn in a thread of its own, with its own event loop.

Why a thread and not the agent's event loop: the server must never share fate with the control
loop (Patroni's users lost their primary when its API hung while the database was fine, and the
other way round). In a thread, a control loop that blocks (a CPU-bound step, a hung syscall,
the stall hook of :mod:`corral.agent.snapshot`) leaves the server answering from the last
snapshot; the GIL is handed over at least every ``sys.getswitchinterval()`` (5 ms), which bounds
what a busy loop can add to a request. A process of its own would isolate even more, but it
would have to be fed the snapshot through a file or a socket on every turn and supervised
besides; a thread reads the snapshot in memory for nothing.

Why uvicorn with its plain h11 protocol (no uvloop, no httptools): maintained, pure Python
(nothing to build), and it takes a bound socket, so binding fails in the caller with a clear
message before any thread starts.

Idle cost: uvicorn's ``Server.main_loop`` wakes every 0.1 s to refresh the ``Date`` header
and look at its exit flag; ten wake-ups a second per agent for nothing. :class:`_Server`
replaces that loop with a wait on an event set by :meth:`ApiServer.stop` (and sends no
``Date``/``Server`` headers, which that tick kept fresh): an idle server sleeps in ``epoll``
until a client comes. Connections: keep-alive 5 s, at most ``MAX_CONNECTIONS`` at once (the
next get 503 at once), so a client that opens many and sends nothing costs sockets, not
progress.

Slow and resetting clients: every connection is its own task; a client that stalls or
resets costs its own connection only. uvicorn's loggers are held at ERROR and never print
a traceback (:class:`_NoTraceback`): a peer's reset is a line, not a stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from corral.store.tls import TlsFiles

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 256
KEEP_ALIVE = 5  # seconds an idle keep-alive connection is kept


class ApiStartError(Exception):
    """The server could not listen (the address is taken, not local, ...)."""


class _NoTraceback(logging.Filter):
    """One line for what went wrong, never a stack (a client's reset is not our bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage().rstrip()}: {type(exc).__name__}: {exc}"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_uvicorn() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        if not any(isinstance(f, _NoTraceback) for f in logger.filters):
            logger.addFilter(_NoTraceback())


class _Server(uvicorn.Server):
    """uvicorn's server without its 0.1 s tick (see the module doc)."""

    def __init__(
        self, config: uvicorn.Config, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        super().__init__(config)
        self.on_stop = on_stop
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.ready = threading.Event()  # set once it listens and serves

    async def main_loop(self) -> None:
        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await self.on_tick(0)  # the default headers, once
        self.ready.set()
        await self._stop.wait()
        if self.on_stop is not None:
            try:
                await self.on_stop()
            except Exception as exc:  # closing a client: nothing left to protect
                log.warning("the API's cleanup failed: %s: %s", type(exc).__name__, exc)

    def request_stop(self) -> None:
        """From any thread."""
        self.should_exit = True
        if self.loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self.loop.call_soon_threadsafe(self._stop.set)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle holds the body behind the headers until the client's delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiStartError(f"the API cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class ApiServer:
    """``start`` binds ``host:port`` (raising :class:`ApiStartError`) and serves ``app`` in a
    daemon thread; ``stop`` ends it (waits up to ``timeout`` seconds). ``port`` after start:
    the bound one."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """``on_stop``: awaited in the server's loop when it stops (closing its clients);
        ``tls``: serve HTTPS with its certificate and key (read at start)."""
        self.app, self.host, self.port, self.on_stop = app, host, port, on_stop
        self.tls = tls
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None

    def start(self, timeout: float = 10.0) -> None:
        quiet_uvicorn()
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, loop="asyncio", http="h11", ws="none", lifespan="off",
            log_config=None, access_log=False, server_header=False, date_header=False,
            timeout_keep_alive=KEEP_ALIVE, limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=1,
            ssl_certfile=self.tls.cert if self.tls else None,
            ssl_keyfile=self.tls.key if self.tls else None,
        )  # fmt: skip
        server = self._server = _Server(config, self.on_stop)
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="corral-api", daemon=True
        )
        self._thread.start()
        if not server.ready.wait(timeout):
            raise ApiStartError(f"the API on {self.host}:{self.port} did not start in {timeout}s")

    @staticmethod
    def _serve(server: _Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # a thread's last word, never the agent's
            log.error("the API server stopped: %s: %s", type(exc).__name__, exc)
        finally:
            sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
