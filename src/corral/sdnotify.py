"""systemd's notify protocol, from the service's side (I/O; nothing of corral is imported).

A service started by systemd with ``Type=notify`` (or a ``WatchdogSec=``) finds in its
environment ``NOTIFY_SOCKET``: a Unix datagram socket, a file path, or an abstract socket
written with a leading ``@``. Each datagram is newline-separated ``KEY=value`` lines:
``READY=1`` (started), ``STATUS=...`` (shown by ``systemctl status``), ``WATCHDOG=1`` (alive),
``STOPPING=1``. ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the pid it is meant for) give the
watchdog period.

Contract:
- :meth:`Notifier.from_environ` returns None when not under systemd (no ``NOTIFY_SOCKET``):
  the caller then sends nothing. With ``take=True`` it removes the variables from the
  environment, so the processes the agent starts (services, the lease guard, etcd) do not
  inherit a socket that is not theirs.
- :meth:`Notifier.send` never raises: a full or gone socket costs a notification, never the
  agent (systemd then judges it by what it did not hear: a missed watchdog restarts it).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(text: str) -> str | bytes | None:
    """``NOTIFY_SOCKET``'s value as a ``sendto`` address (None: not one systemd writes)."""
    if text.startswith("@"):
        return b"\0" + text[1:].encode()  # Linux abstract namespace
    if text.startswith("/"):
        return text
    return None


def watchdog_period(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd expects ``WATCHDOG=1`` (None: no watchdog for ``pid``)."""
    usec, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None  # meant for another process (a parent that exec'd us would have said)
    return int(usec) / 1e6


class Notifier:
    def __init__(self, address: str | bytes, watchdog: float | None = None) -> None:
        self.address, self.watchdog = address, watchdog
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._warned = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, take: bool = False
    ) -> Notifier | None:
        env = os.environ if environ is None else environ
        address = socket_address(env.get("NOTIFY_SOCKET", ""))
        watchdog = watchdog_period(env, os.getpid())
        if take:
            for name in VARIABLES:
                env.pop(name, None)
        return cls(address, watchdog) if address is not None else None

    def send(self, *lines: str) -> bool:
        """One datagram with ``lines``; False (logged once) when it could not be sent."""
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("systemd notification not sent (%s): %s", lines[0], exc)
                self._warned = True
            return False
        return True

    def close(self) -> None:
        self._sock.close()
