"""The RabbitMQ health check that fits a check every second: one AMQP connection kept open.

Why not ``rabbitmqctl``: each call boots an Erlang VM (2-5 s, ~62 MB on this machine kind).
Why not a TCP connect: the listener accepts while the node is not serving (the port is open
during boot on some versions, and a paused node may still complete the TCP handshake). Why
not the management plugin: it costs every node ~30-40 MB more and a web server to serve one
answer.

The check (:class:`AmqpCheck`) uses **aio-pika** (maintained, asyncio-native, on aiormq and
pamqp; corral's agent is asyncio, and the same client publishes with confirms in the tests):
it keeps one connection and one channel open and, per check, does one AMQP round trip on
them (``exchange.declare`` passive of ``amq.direct``: the broker's channel process and its
metadata store answer). So a check costs one small frame each way on an open socket; a
broken connection (the node stopped, paused by ``pause_minority``, or was killed) fails the
check and the next check reconnects (a full AMQP handshake, within ``timeout``).

``netns``: connect from inside that network namespace (:class:`NetnsTransport`), for a
checker that does not run in the node's namespace (the tests); an agent runs in its node's.

Contract of :meth:`AmqpCheck.check`: returns a :class:`AmqpResult` (``ok`` and a detail for
people); never raises for the broker's failures; bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.connection import make_url
from aiormq.connection import TransportFactory
from yarl import URL

CLONE_NEWNET = 0x40000000


class _QuietRefusals(logging.Filter):
    """aiormq logs every refused connect at ERROR; a failed check already says so (once,
    with its reason), and a node that is down would otherwise log a line every check."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_QuietRefusals())


def socket_in_netns(netns: str) -> socket.socket:
    """A TCP socket made inside network namespace ``netns`` (a thread enters it with
    ``setns`` and ends: the socket keeps the namespace it was made in, the process stays
    where it is). For a checker outside the node's namespace (tests, the lab)."""
    made: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=enter, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class NetnsTransport(TransportFactory):
    """aiormq's transport, connected from inside a network namespace."""

    def __init__(self, netns: str) -> None:
        self.netns = netns

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = await asyncio.to_thread(socket_in_netns, self.netns)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (str(url.host), url.port or 5672))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)


@dataclass(frozen=True)
class AmqpResult:
    ok: bool
    detail: str
    elapsed: float


async def amqp_connect(
    host: str,
    port: int,
    user: str,
    password: str,
    timeout: float,
    netns: str | None = None,
    *,
    name: str = "corral",
) -> AbstractConnection:
    """An AMQP connection (aio-pika), from inside ``netns`` when given."""
    url = make_url(host=host, port=port, login=user, password=password)
    conn = aio_pika.Connection(url, client_properties={"connection_name": name})
    if netns is not None:
        # aio-pika passes its parsed parameters on to aiormq.connect but keeps only the ones
        # it knows: the transport goes in after parsing (else the socket would be made in
        # this process's namespace, and the lab's address routed out of the machine)
        conn.kwargs["transport_factory"] = NetnsTransport(netns)
    try:
        await conn.connect(timeout=timeout)
    except BaseException:
        with contextlib.suppress(Exception):  # else aio-pika closes it from __del__, unawaited
            await asyncio.wait_for(conn.close(), 1.0)
        raise
    return conn


class AmqpCheck:
    """One kept-open AMQP connection to one node (see the module docstring)."""

    def __init__(self, host: str, port: int = 5672, *, user: str, password: str,
                 timeout: float = 2.0, netns: str | None = None) -> None:  # fmt: skip
        self.host, self.port, self.timeout, self.netns = host, port, timeout, netns
        self._user, self._password = user, password
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._closing: set[asyncio.Future[None]] = set()

    async def _connect(self) -> AbstractChannel:
        conn = await amqp_connect(
            self.host, self.port, self._user, self._password, self.timeout, self.netns,
            name="corral-health",
        )  # fmt: skip
        self._conn = conn
        self._channel = await conn.channel(publisher_confirms=False)
        return self._channel

    async def check(self) -> AmqpResult:
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                channel = self._channel
                if channel is None or channel.is_closed or self._closed():
                    self._drop()
                    channel = await self._connect()
                await channel.get_exchange("amq.direct", ensure=True)
        except (Exception, asyncio.CancelledError) as exc:
            # aiormq fails the calls pending on a broken connection with CancelledError: a
            # failed check, unless this task itself is being cancelled (then it goes on)
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            self._drop()
            detail = f"AMQP {self.host}:{self.port}: {type(exc).__name__}: {exc}"[:300]
            return AmqpResult(False, detail, time.monotonic() - began)
        return AmqpResult(True, "AMQP round trip ok", time.monotonic() - began)

    def _closed(self) -> bool:
        return self._conn is None or self._conn.is_closed

    def _drop(self) -> None:
        """Forget the connection; it closes in the background (a broken connection's close
        must not hold up, or be cancelled with, the check that found it broken)."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            task = asyncio.ensure_future(_close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._drop()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=2.0)


async def _close_quietly(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(conn.close(), 1.0)


__all__ = ["AmqpCheck", "AmqpResult", "NetnsTransport", "amqp_connect", "socket_in_netns"]
