"""Registering this node under a lease, its gossip member, and the spec it runs (shell).

- :meth:`Registrar.register`: gossip starts (and gets ``JOIN_WAIT`` to join) first, so a
  rebooted node refutes its old death before its registration can look unclean; then a new
  lease and ``nodes/<node>`` under it, replacing a live registration in one compare-and-swap
  when there is one (the core keeps which registrations were continuous, see
  :meth:`~corral.core.agent.lease.LeaseState.registered`). Registered only once the record
  is written: a lost put leaves an orphan lease that expires, not an agent renewing a lease
  that names no registration.
- :meth:`Registrar.adopt_spec`: a spec from the store that does not validate, or that the core
  refuses, is reported and the running spec is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from corral.agent.events import EventLog
from corral.agent.lb import LbDuty
from corral.agent.membership import AgentGossip
from corral.agent.publish import StatusPublisher
from corral.clocks import sleep_until
from corral.core.agent.core import AgentCore
from corral.core.clock import Clock, Grid
from corral.fileio import write_atomic
from corral.records import RegistrationRecord
from corral.spec import SpecError, load_spec_text
from corral.store import Compare, Keys, LeaseNotFound, PermissionDenied, Put, Store, StoreError

JOIN_WAIT = 0.5  # seconds a (re)starting agent waits for gossip to join before registering


class Registrar:
    def __init__(
        self,
        core: AgentCore,
        store: Store,
        keys: Keys,
        *,
        address: str,
        clock: Clock,
        wall: Callable[[], float],
        events: EventLog,
        gossip: AgentGossip | None,
        status: StatusPublisher,
        lb: LbDuty,
        spec_text: str | None,
        spec_copy: Path | None,
    ) -> None:
        """``spec_copy``: where the running spec is written for the lease guard (None: not)."""
        self.core, self.store, self.keys, self.address = core, store, keys, address
        self.clock, self.wall, self.events = clock, wall, events
        self.gossip, self.status, self.lb = gossip, status, lb
        self.spec_text, self.spec_copy = spec_text, spec_copy
        self.on_change: Callable[[], None] = lambda: None
        self.on_renewed: Callable[[], None] = lambda: None  # tell the lease guard
        self._gossip_error: str | None = None

    async def register(self) -> None:
        """Register under a new lease (see the module docstring)."""
        if self.gossip is not None and self.gossip.member is None:
            await self.start_gossip()
            if self.gossip.member is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gossip.member.wait_joined(), JOIN_WAIT)
        asked = self.clock.now()
        lease = await self.store.grant(self.core.lease.ttl)
        record = RegistrationRecord(self.address, os.getpid(), self.wall()).dump()
        key = self.keys.node(self.core.node)
        old = await self.store.get(key)
        replaced = None
        if old is not None:
            swap = await self.store.txn(
                [Compare(key, "mod_revision", "==", old.mod_revision)],
                [Put(key, record, lease.id)],
            )
            revision, replaced = swap.revision, old.mod_revision
            if not swap.succeeded:
                replaced = None
        if replaced is None:
            revision = await self.store.put(key, record, lease=lease.id)
        self.core.lease.registered(lease.id, revision, asked, replaced)
        await self._registered()
        self.events.decide(f"registered under lease {lease.id:x} (ttl {lease.ttl}s)")

    async def reattach(self, lease: int) -> bool:
        """Take over ``lease``, handed over by the previous agent of this node
        (:mod:`.handover`): one renewal sent now (rule 1's deadline runs from it), then the
        registration under it as ours, unchanged (the controller never saw the node go).
        False when etcd no longer knows the lease or ``nodes/<node>`` is not under it; the
        keepalive loop then registers anew. Store errors propagate."""
        sent = self.clock.now()
        try:
            if await self.store.keepalive(lease) <= 0:
                return False
        except LeaseNotFound:
            return False
        kv = await self.store.get(self.keys.node(self.core.node))
        if kv is None or kv.lease != lease:
            return False
        self.core.lease.registered(lease, kv.mod_revision, sent)
        await self._registered()
        await self.events.event(
            "lease", f"took over lease {lease:x} from the previous agent (handover)"
        )
        return True

    async def _registered(self) -> None:
        """Under a lease new to this agent: every leased record is written again, the spec
        read, gossip started."""
        self.status.forget()
        self.lb.republish()
        if self.gossip is not None:
            self.gossip.republish()
        await self.load_spec()
        await self.start_gossip()
        self.on_change()

    async def keepalive_loop(
        self,
        grid: Grid,
        keep_deadline: Callable[[], float],
        on_lost: Callable[[], Awaitable[None]],
    ) -> None:
        """Register, then renew every ``keepalive_interval`` on the timer ``grid`` (the grid
        instant nearest the interval: renewals share their wake-ups with the gossip probes).
        A renewal tells the core when it was sent (the lease runs from when etcd got it, which
        is not before) and ``on_renewed``; a lost lease calls ``on_lost``; a store error is
        retried a tick later, not an interval (the self-fence deadline runs meanwhile)."""
        while True:
            start = self.clock.now()
            try:
                if self.core.lease.lease is None:
                    await self.register()
                else:
                    sent = self.clock.now()
                    await self.store.keepalive(self.core.lease.lease)
                    self.core.lease.renewed(sent, self.clock.now(), keep_deadline())
                    self.on_renewed()
            except LeaseNotFound:
                await on_lost()
            except StoreError as exc:
                self.events.decide(f"keepalive failed: {exc}")
                await sleep_until(self.clock, grid.near(start + grid.tick))
                continue
            interval = self.core.spec.effective_timing.keepalive_interval
            await sleep_until(self.clock, grid.near(max(start + interval, self.clock.now())))

    async def start_gossip(self) -> None:
        if self.gossip is None or self.gossip.member is not None:
            return
        try:
            started = await self.gossip.start()
        except (OSError, StoreError, ValueError) as exc:
            text = f"cannot start gossip (retrying): {exc}"
            if text != self._gossip_error:  # one event per distinct problem, not per retry
                self._gossip_error = text
                await self.events.event("gossip", text)
            return
        self._gossip_error = None
        if not started or self.gossip.member is None:
            return
        self.gossip.member.subscribe(lambda _change: self.on_change())
        self.events.decide(f"gossip member bound to port {self.core.spec.gossip.port}")

    async def load_spec(self) -> None:
        """The store's spec (adopted if it differs), or ours written there if it has none."""
        kv = await self.store.get(self.keys.spec)
        if kv is None and self.spec_text is not None:
            try:
                await self.store.txn(
                    [Compare.missing(self.keys.spec)],
                    [Put(self.keys.spec, self.spec_text.encode())],
                )
            except PermissionDenied:  # under etcd's RBAC agents never write the spec
                await self.events.event(
                    "spec",
                    "the store has no spec and agents may not write it: running ours until "
                    "an admin pushes one (corral auth apply seeds it)",
                )
            return
        if kv is not None and kv.value.decode(errors="replace") != self.spec_text:
            await self.adopt_spec(kv.value)

    async def adopt_spec(self, raw: bytes) -> None:
        text = raw.decode(errors="replace")
        try:
            spec = load_spec_text(text, "store:spec")
        except SpecError as exc:
            await self.events.event(
                "spec",
                f"refused the spec in the store, keeping the running one: "
                f"{exc.issues[0].one_line()} ({len(exc.issues)} problem(s))",
            )
            return
        refused = self.core.refuse_spec(spec)
        if refused is not None:
            await self.events.event("spec", f"refused the spec in the store: {refused}")
            return
        self.core.set_spec(spec)
        self.spec_text = text
        self.write_spec_copy()
        await self.events.event("spec", "running a new spec from the store")

    def write_spec_copy(self) -> None:
        if self.spec_copy is not None and self.spec_text is not None:
            write_atomic(self.spec_copy, self.spec_text)  # 0600, never half a spec
