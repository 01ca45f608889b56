"""Handing the node lease over across a planned restart of the agent (shell).

Why: nobody renews the node lease while the agent is away, the lease guard drops the node's
exclusive instances (its VIPs) ``lease_ttl - safety_margin`` after the last renewal, and a
Python agent needs about that long to come back. A restart of corral itself must not touch
what it manages.

Protocol (``<state_dir>/handover.json``, written atomically; parsed by
:class:`corral.core.guard.Handover`):

1. The agent stopping on SIGTERM/SIGINT with a lease writes ``{"node", "lease", "token",
   "until", "endpoints", "ttl", "margin", "interval"}``: the lease id, its guard token (the
   lifetime whose listing it hands over), ``until`` = now + :data:`HANDOVER_MAX` on
   CLOCK_MONOTONIC, the etcd client URLs, the timing, and ``tls``: the paths of the CA,
   certificate and key the guard presents to etcd (empty for plain http).
2. The lease guard, which outlives the agent, renews that lease every ``interval`` over etcd's
   HTTP gateway until ``until`` or until the file is gone. Each renewal that etcd accepts moves
   the guard's deadline for the handed-over listing to ``sent + ttl - margin``; nothing else
   does: the guard's rule-1 deadline comes from renewals it sent itself, as the agent's does.
   A renewal answered "no such lease" ends the handover (the lease expired or was revoked).
3. The next agent (:class:`corral.agent.succession.Succession`), before it adopts anything,
   sends one renewal of that lease itself and, when etcd accepts it and ``nodes/<node>`` is
   still the registration under it, takes the lease over as its own (same lease, same
   registration: the controller never saw the node go) and removes the file. Otherwise it
   removes the file and registers anew, as after a crash.

Rule 1 (never two holders): the node's registration stays backed by a lease that somebody on
this node renews; the controller moves nothing while it lives; whoever renews it (guard, then
agent) stops the exclusive instances when ``ttl - margin`` passes without an accepted renewal,
so the node holds nothing once the lease could have expired. The longest restart it tolerates
is :data:`HANDOVER_MAX`; an agent that does not come back by then leaves a lease that expires
within ``ttl`` and a guard that fences at its deadline: failover is delayed by at most
``HANDOVER_MAX``, never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from corral.core.guard import Handover
from corral.fileio import write_atomic
from corral.store.etcd import renew_over_gateway
from corral.store.tls import TlsFiles

HANDOVER_MAX = 15.0  # seconds the guard keeps the lease for the next agent
FILE = "handover.json"
__all__ = ["FILE", "HANDOVER_MAX", "Handover", "read", "remove", "renew", "write"]


def write(state_dir: Path, handover: Handover) -> None:
    write_atomic(state_dir / FILE, handover.dump())


def read(state_dir: Path) -> Handover | None:
    try:
        return Handover.parse((state_dir / FILE).read_text())
    except OSError:
        return None


def remove(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_dir / FILE)


def renew(handover: Handover, timeout: float) -> int:
    """One renewal of the handed-over lease (blocking; the guard has no event loop of its
    own): each endpoint in turn within ``timeout`` seconds in all, a fresh connection each
    time. Returns etcd's TTL (0: the lease is gone); raises ``OSError``, ``GatewayError`` or
    ``TimeoutError`` when no endpoint answered."""
    return asyncio.run(_renew(handover, timeout))


async def _renew(handover: Handover, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        tls = TlsFiles(*handover.tls) if handover.tls else None
        return await renew_over_gateway(handover.endpoints, handover.lease, tls)
