"""``PacketPump``: one thread that reads a datagram socket and runs its owner's timer (shell).

Why a thread: on a virtual machine, waking an idle process costs about the same CPU whatever
runs after it, and asyncio's loop adds its own bookkeeping to every wake. Measured here (2-core
VM, 20 datagrams a second echoed): 210 us of CPU per datagram through an asyncio datagram
endpoint, under 80 us through a thread blocked in ``poll``. The gossip protocol wakes an agent
25-30 times a second while nothing happens, so its datagrams and its timer run here, and the
event loop sleeps until something it owns is due.

Contract:

- :meth:`start` runs the thread; it waits in ``poll`` on the socket and a wake-up pipe until
  ``due()`` (a CLOCK_MONOTONIC instant, ``inf`` for none) has come.
- Every datagram goes to ``on_datagram(data, (host, port))`` on the pump thread, up to
  :data:`BURST` per wake; a socket error on receive (an ICMP "port unreachable" from a dead
  peer) goes to ``on_error(exc)`` and the pump goes on.
- When ``due()`` has come, ``on_due()`` runs on the pump thread; ``due()`` is read again after
  every wake, so callbacks may move it. A thread that moves it *earlier* calls :meth:`poke`.
- An exception in a callback is logged and the pump goes on: a malformed packet or a bug in
  one path must not stop the protocol.
- :meth:`stop` ends the thread (idempotent) and waits up to ``timeout`` for it; the socket is
  not closed (its owner does that).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

BURST = 64
"""Datagrams read per wake before the deadline is looked at again."""
MAX_DATAGRAM = 65535
PUMP_THREAD_PREFIX = "pump-"
"""Every pump thread's name starts so (tests look for leaked ones)."""


class PacketPump:
    """The thread of one datagram socket (see the module contract)."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, tuple[str, int]], None],
        on_due: Callable[[], None],
        due: Callable[[], float],
        *,
        on_error: Callable[[OSError], None] = lambda _exc: None,
        now: Callable[[], float] = time.monotonic,
        name: str = "packets",
    ) -> None:
        self._sock = sock
        self._on_datagram = on_datagram
        self._on_due = on_due
        self._due = due
        self._on_error = on_error
        self._now = now
        self._name = name
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("PacketPump already started")
        self._sock.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=PUMP_THREAD_PREFIX + self._name, daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """Make the thread read ``due()`` again now (from any thread; cheap, never blocks)."""
        if self._closed:
            return  # its descriptors may already belong to another file
        with contextlib.suppress(OSError):  # full: a wake is pending already
            os.write(self._wake_w, b"\0")

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread and wait up to ``timeout`` seconds for it."""
        if self._stopping:
            return
        self._stopping = True
        self.poke()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: the pump thread did not stop within %.1fs", self._name, timeout)
                return  # it still reads the pipe: leave it open
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        sock_fd = self._sock.fileno()
        while not self._stopping:
            wait = self._due() - self._now()
            # whole milliseconds, rounded up: a wake before the deadline would only sleep again
            timeout = -1 if wait == math.inf else max(0, math.ceil(wait * 1000))
            try:
                ready = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, _mask in ready:
                if fd == sock_fd:
                    self._drain()
                else:
                    self._clear_wake()
            if self._stopping:
                break
            if self._now() >= self._due():
                self._guarded(self._on_due)

    def _drain(self) -> None:
        for _ in range(BURST):
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:  # ECONNREFUSED after sending to a closed port, and the like
                self._guarded(self._on_error, exc)
                continue
            self._guarded(self._on_datagram, data, (str(addr[0]), int(addr[1])))

    def _clear_wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while os.read(self._wake_r, 512):
                pass

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: a callback failed (the pump goes on)", self._name)
