"""The agent's alert loop (shell): duties from events, deliveries, takeovers.

Every agent runs it (``AlertDuty.run``), on the watch's copy of the cluster prefix (no read
of its own), woken by a change under ``events/``, ``alerts/`` or ``nodes/`` and at its
next retry:

- the controller turns events written since ``alerts/cursor`` into duties, one per (sink,
  event) the sink's filters want, owned by itself, in one transaction with its fencing
  token and the cursor as read (:func:`corral.records.alerts.create_txn`);
- each agent delivers its own due duties, one task per duty, and settles each with a
  compare-and-swap on the duty as read and its registration: delivered or given up (into
  ``alerts/log/``, the duty deleted), or the next try's time;
- a duty whose owner's registration is gone (killed, fenced, lease expired) is taken by the
  first agent whose compare-and-swap wins (rule 6), then delivered by it.

What to do with each duty is :func:`corral.core.alerts.duty_action`'s call; the retry
schedule :func:`corral.core.alerts.after_try`'s. At least once: a delivery whose settle
write is lost (the agent died between the answer and the write) is sent again by the taker,
with the same dedup id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from corral import __version__
from corral.agent.controller import token_compare
from corral.agent.snapshot import ActionTimes
from corral.agent.view import StoreView
from corral.core import alerts as core
from corral.core.clock import Clock
from corral.drivers.alert import post_webhook, run_alert_agent
from corral.drivers.base import DriverError
from corral.records.alerts import (
    KEEP_LOG,
    AlertState,
    DeliveryRecord,
    DutyRecord,
    DutyRow,
    create_txn,
    facts_of,
    owner_guard,
    read_alert_state,
    settle_ops,
)
from corral.spec import Spec
from corral.spec.alerts import AlertSink
from corral.store import Keys, Op, Put, Store, StoreError, WatchEvent

if TYPE_CHECKING:
    from corral.agent.node import Agent

log = logging.getLogger(__name__)
POLL = 1.0  # seconds: the longest sleep between two looks (a missed wake costs this much)


class AlertDuty:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        node: str,
        view: StoreView,
        spec: Callable[[], Spec],
        registration: Callable[[], int | None],
        token: Callable[[], int | None],
        wall: Callable[[], float],
        clock: Clock,
    ) -> None:
        """``registration``: this agent's (mod revision of its ``nodes/<node>``);
        ``token``: its controller fencing token when it is the controller, else None."""
        self.store, self.keys, self.node, self.view = store, keys, node, view
        self.spec, self.registration, self.token = spec, registration, token
        self.wall, self.clock = wall, clock
        self.wake = asyncio.Event()
        self.counts: dict[tuple[str, str], int] = {}  # (sink, delivered|retry|failed) -> tries
        self.latency = ActionTimes()  # per sink: seconds from the event to its delivery
        self._flying: dict[bytes, asyncio.Task[None]] = {}
        self._settled: dict[bytes, int] = {}  # duty key -> revision of our last write of it
        self._sequence = 0  # CRM_alert_node_sequence: this agent's runs of alert agents
        self._client: httpx.AsyncClient | None = None
        watched = (b"events/", b"alerts/", b"nodes/")
        self._watched = tuple(keys.root_prefix + p for p in watched)

    @classmethod
    def of(cls, agent: Agent) -> AlertDuty:
        """The agent's alert duty, woken by its watch."""
        controller = agent.controller
        duty = cls(
            agent.store, agent.keys, agent.node, agent.view, lambda: agent.spec,
            lambda: agent.registration, lambda: controller.token, agent.wall, agent.clock,
        )  # fmt: skip
        agent.watch.on_event = duty.changed
        return duty

    def changed(self, event: WatchEvent) -> None:
        """The watch's hook: wakes the loop for a change it may act on (without sinks in
        the spec, only a change of the duties left from an earlier spec)."""
        if event.key.startswith(self._watched[1]) or (
            event.key.startswith(self._watched) and self.spec().alerts
        ):
            self.wake.set()

    def frozen(self) -> tuple[tuple[str, str, int], ...]:
        """The delivery counts for the metrics: ``(sink, outcome, tries)``."""
        return tuple((s, o, n) for (s, o), n in sorted(self.counts.items()))

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests, the bench)."""
        await asyncio.gather(*list(self._flying.values()), return_exceptions=True)

    async def run(self) -> None:
        """Until cancelled; the deliveries under way are cancelled with it."""
        try:
            while True:
                pause = await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), pause)
                self.wake.clear()
        finally:
            for task in self._flying.values():
                task.cancel()
            if self._client is not None:
                await self._client.aclose()

    async def step(self) -> float:
        """One look; returns how long to sleep at most."""
        spec = self.spec()
        if not self.view.ready or (not spec.alerts and not self._has_duties()):
            return POLL
        state = read_alert_state(self.keys, self.view.kvs())
        token = self.token()
        if token is not None and spec.alerts:
            with contextlib.suppress(StoreError):
                await self._create(spec, state, token)
        return await self._tend(spec, state)

    def _has_duties(self) -> bool:
        return self.view.has_prefix(self._watched[1] + b"duty/")

    async def _create(self, spec: Spec, state: AlertState, token: int) -> None:
        up_to = self.view.revision
        if state.cursor is None:  # alerts just configured: from now on, not the history
            owed: list[tuple[str, str]] = []
        else:
            events = [(i, rev, facts_of(e)) for i, rev, e in state.events]
            owed = core.new_duties(spec.alerts, events, state.cursor.revision)
            if not owed:  # the cursor stays: moving it is a write that would wake us again
                return
        reg = self.registration()
        if reg is None:
            return
        by_id = {i: e for i, _, e in state.events}
        now = self.wall()
        new = [(s, i, DutyRecord(self.node, reg, by_id[i], created=now)) for s, i in owed]
        trim = core.to_trim(state.logs, 0, KEEP_LOG)
        guard = token_compare(self.keys, token)  # rule 6: only the controller of the token
        compares, ops = create_txn(self.keys, guard, state, new, up_to, trim)
        done = await self.store.txn(compares, ops)
        if not done.succeeded:
            return
        for sink, event_id, duty in new:  # ours and due: sent now, not after the watch's echo
            row = DutyRow(sink, event_id, self.keys.alert_duty(sink, event_id), done.revision, duty)
            task = asyncio.create_task(self._deliver(spec, row, spec.alerts[sink], reg))
            self._flying[row.key] = task

    async def _tend(self, spec: Spec, state: AlertState) -> float:
        now, my_reg, pause = self.wall(), self.registration(), POLL
        # a settle the view has seen, of a duty gone from it, is forgotten (memory stays
        # bounded); one it has not seen yet is kept, so the duty's echo is not sent again
        present, seen = {row.key for row in state.duties}, self.view.revision
        self._settled = {k: r for k, r in self._settled.items() if k in present or r > seen}
        for row in state.duties:
            if row.key in self._flying or row.mod_revision < self._settled.get(row.key, 0):
                continue
            d = row.duty
            view = core.DutyView(d.owner, d.reg, d.next_at, row.sink in spec.alerts)
            action = core.duty_action(view, self.node, my_reg, state.registrations, now)
            if action == "wait":
                pause = min(pause, max(0.0, d.next_at - now))
            elif action in ("send", "drop") and my_reg is not None:
                sink = spec.alerts.get(row.sink)
                task = asyncio.create_task(self._deliver(spec, row, sink, my_reg))
                self._flying[row.key] = task
            elif action == "take" and my_reg is not None:
                await self._take(row, my_reg)
        return pause

    async def _take(self, row: DutyRow, my_reg: int) -> None:
        taken = DutyRecord(self.node, my_reg, row.duty.event, row.duty.tried, 0.0,
                          row.duty.created, row.duty.error)  # fmt: skip
        guard = owner_guard(self.keys, row, self.node, my_reg)
        with contextlib.suppress(StoreError):
            done = await self.store.txn(guard, [Put(row.key, taken.dump())])
            if done.succeeded:
                log.info("%s: took the alert %s/%s from %s", self.node, row.sink,
                         row.event_id, row.duty.owner)  # fmt: skip
                self.wake.set()

    async def _deliver(self, spec: Spec, row: DutyRow, sink: AlertSink | None, reg: int) -> None:
        try:
            error = await self._send(spec, row, sink) if sink is not None else "sink removed"
            now = self.wall()
            if sink is None:
                outcome = core.Next("failed", row.duty.tried)
            else:
                outcome = core.after_try(error is None, row.duty.tried, sink, now)
            key = (row.sink, outcome.verdict)
            self.counts[key] = self.counts.get(key, 0) + 1
            if outcome.verdict == "delivered":
                self.latency.observe(row.sink, max(0.0, now - row.duty.event.time))
            await self._settle(row, reg, outcome, error or "", now)
        except StoreError as exc:
            log.warning("%s: alert %s/%s not settled: %s", self.node, row.sink, row.event_id, exc)
        finally:
            self._flying.pop(row.key, None)
            self.wake.set()

    async def _settle(
        self, row: DutyRow, reg: int, outcome: core.Next, error: str, now: float
    ) -> None:
        d, guard = row.duty, owner_guard(self.keys, row, self.node, reg)
        if outcome.verdict == "retry":
            again = DutyRecord(d.owner, d.reg, d.event, outcome.tried, outcome.at, d.created, error)
            ops: list[Op] = [Put(row.key, again.dump())]
        else:
            record = DeliveryRecord(
                outcome.verdict, outcome.tried, now - d.event.time, now, self.node, error,
                d.event.kind, d.event.target or d.event.node, d.event.resource,
            )  # fmt: skip
            ops = settle_ops(self.keys, row, record)
        done = await self.store.txn(guard, ops)
        if done.succeeded:  # else the view shows who holds it now: looked at again
            self._settled[row.key] = done.revision

    async def _send(self, spec: Spec, row: DutyRow, sink: AlertSink) -> str | None:
        """One try; None when it was delivered, else what went wrong."""
        alert = core.classify(facts_of(row.duty.event))
        if alert is None:
            return "not an alert"
        try:
            if sink.webhook is not None:
                body = core.webhook_body(
                    spec.cluster, row.sink, row.event_id, alert, row.duty.event.reason
                )
                if self._client is None:
                    self._client = httpx.AsyncClient()
                await post_webhook(self._client, sink.webhook, body, sink.timeout)
            elif sink.exec is not None:
                self._sequence += 1
                ids = {n: i for i, n in enumerate(spec.nodes, 1)}
                env = core.crm_env(
                    alert, sink.recipient, self._sequence, ids, __version__, self.wall()
                )
                await run_alert_agent(sink.exec, env, sink.timeout)
        except DriverError as exc:
            return str(exc)
        return None
