"""The agent's side of what outlives it: its lease guard, and the lease across a planned
restart (:mod:`.handover`). Shell; rule 1 is argued in ``docs/safety-rules.md``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from corral.agent import handover as ho
from corral.agent.guard import GuardWriter, guard_alive, read_listing, spawn
from corral.core.agent.lease import LeaseState
from corral.store import StoreError
from corral.store.tls import TlsFiles

if TYPE_CHECKING:
    from corral.agent.events import EventLog
    from corral.agent.registrar import Registrar

log = logging.getLogger(__name__)


class Succession:
    """``window``: seconds the guard keeps the lease for the next agent after a planned stop
    (0: none). ``inherited``: the exclusive names a handed-over listing guarded, listed with
    this agent's own until its adoption lists them as services (the caller clears it)."""

    def __init__(self, state_dir: Path, node: str, window: float, events: EventLog) -> None:
        self.state_dir, self.node, self.window, self.events = state_dir, node, window, events
        self.guard_pid: int | None = None
        self.inherited: frozenset[str] = frozenset()

    def start_guard(self) -> None:
        self.guard_pid = spawn(self.state_dir)

    async def keep_guard(self) -> None:
        """Start the guard again if it is gone (rule 1 outlives the agent only through it)."""
        if self.guard_pid is None or guard_alive(self.guard_pid):
            return
        old, self.guard_pid = self.guard_pid, spawn(self.state_dir)
        text = f"the lease guard (pid {old}) was not running: started it again"
        await self.events.event("guard", text)

    async def take(self, registrar: Registrar, list_them: Callable[[], None]) -> None:
        """At start, before anything is adopted: take the lease a previous agent handed over
        (adopted exclusive instances are then kept under it, not self-fenced), list what its
        listing guarded under our own token (``list_them``), and only then remove the file
        (the guard stops renewing)."""
        handover = ho.read(self.state_dir)
        try:
            if (
                handover is not None
                and handover.node == self.node
                and await registrar.reattach(handover.lease)
            ):
                listing = read_listing(self.state_dir / "guard.json")
                if listing.token == handover.token:
                    self.inherited = frozenset(listing.exclusive)
                list_them()
        except StoreError as exc:
            await self.events.event("lease", f"could not take the handed-over lease: {exc}")
        finally:
            ho.remove(self.state_dir)

    def give(
        self, store: object, lease: LeaseState, files: GuardWriter | None,
        interval: float, now: float,
    ) -> None:  # fmt: skip
        """On a planned stop with a lease: the guard renews it for the next agent until
        ``now + window`` (needs the guard and a store with etcd endpoints; over TLS with the
        store's files). A failed write is logged: the lease then runs out as after a crash."""
        endpoints: list[str] | None = getattr(store, "endpoints", None)
        tls: TlsFiles | None = getattr(store, "tls", None)
        if self.window <= 0 or files is None or lease.lease is None or not endpoints:
            return
        handover = ho.Handover(
            self.node, lease.lease, files.token, now + self.window, tuple(endpoints),
            lease.ttl, lease.margin, interval, tls.renewal().as_tuple() if tls else (),
        )  # fmt: skip
        try:
            ho.write(self.state_dir, handover)
        except OSError as exc:
            log.warning("could not hand the lease over to the guard: %s", exc)
            return
        log.info("handed lease %x to the guard for up to %g s", lease.lease, self.window)
