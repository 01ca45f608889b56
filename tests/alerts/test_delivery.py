"""Alert deliveries over a real etcd, to a real webhook on loopback
(:mod:`corral.agent.alerts`): retries with backoff and one dedup id until a 200, exactly one
200 per event; an exec agent that hangs is killed and logged as failed; the duty of an agent
that died is taken by exactly one other agent (rule 6) and delivered; a deposed controller
writes no duty."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.agent.alerts import AlertDuty
from corral.agent.view import StoreView
from corral.clocks import MonotonicClock
from corral.lab.hook import Hook
from corral.records import Event
from corral.records.alerts import DutyRecord, read_alert_state, read_deliveries
from corral.spec import Spec, load_spec_text
from corral.store import Compare, Keys, Put, Store
from corral.store.lab import etcd_lab

pytestmark = pytest.mark.etcd
KEYS = Keys("al")
DEADLINE = 30.0  # seconds: generous, the machine is shared


def spec_for(url: str) -> Spec:
    return load_spec_text(f"""
cluster: al
nodes: {{a: {{address: 198.18.0.11}}, b: {{address: 198.18.0.12}}, c: {{address: 198.18.0.13}}}}
resources: {{web: {{process: "sleep 1000"}}}}
alerts:
  hook: {{webhook: "{url}", backoff: 50ms, max_backoff: 200ms, timeout: 5s}}
  hang: {{exec: "sleep 30", kinds: [fencing], timeout: 300ms}}
""")


class Peer:
    """One agent's alert duty, its view loaded by a range read before each step."""

    def __init__(self, store: Store, node: str, spec: Spec) -> None:
        self.store, self.node, self.view = store, node, StoreView()
        self.reg: int | None = None
        self.lease = 0
        self.token: int | None = None
        self.duty = AlertDuty(
            store, KEYS, node, self.view, lambda: spec, lambda: self.reg, lambda: self.token,
            time.time, MonotonicClock(),
        )  # fmt: skip

    async def register(self) -> None:
        self.lease = (await self.store.grant(30)).id
        self.reg = await self.store.put(KEYS.node(self.node), b"{}", lease=self.lease)

    async def lead(self) -> None:
        put = Put(KEYS.controller, self.node.encode(), self.lease)
        done = await self.store.txn([Compare.missing(KEYS.controller)], [put])
        assert done.succeeded
        self.token = done.revision

    async def step(self) -> float:
        self.view.load(await self.store.range(KEYS.root_prefix))
        pause = await self.duty.step()
        await self.duty.drain()
        return pause


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with etcd_lab(tmp_path, 1) as lab, lab.client() as real:
        yield real


async def event(
    store: Store, node: str, kind: str, reason: str, res: str = "", at: str = ""
) -> str:
    now = time.time()
    key = KEYS.event_key(int(now * 1e9), node)
    await store.put(key, Event(now, node, res, kind, reason, target=at).dump())
    return key.decode().rsplit("/", 1)[1]


async def until_delivered(store: Store, peers: list[Peer], want: int) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        pauses = [await p.step() for p in peers]
        logs = read_deliveries(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        if len(logs) >= want:
            return [(s, e, r.status) for s, e, r in logs]
        await asyncio.sleep(min(0.05, *pauses))
    raise AssertionError(f"not {want} deliveries within {DEADLINE}s")


async def test_retries_until_200_one_dedup_id_and_a_hanging_agent_killed(store: Store) -> None:
    hook = Hook(fail_first=3).start()
    try:
        a = Peer(store, "a", spec_for(hook.url))
        await a.register()
        await a.lead()
        await a.step()  # alerts from now on: the cursor, no history
        fenced = await event(store, "a", "fence", "b fenced by ipmi (reboot, 0.1s): lost", at="b")
        started = await event(store, "a", "start", "started web: assigned", "web")
        await event(store, "a", "spec", "running a new spec")  # not an alert
        logs = await until_delivered(store, [a], 3)
        assert sorted(logs) == sorted([
            ("hang", fenced, "failed"), ("hook", fenced, "delivered"), ("hook", started, "delivered"),
        ])  # fmt: skip
        assert hook.delivered() == {f"al/hook/{fenced}": 1, f"al/hook/{started}": 1}
        assert len(hook.posts) == 8  # 3 x 500 then 200, per event, all with the same id
        records = {
            (s, e): r
            for s, e, r in read_deliveries(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        }
        assert records[("hook", fenced)].tried == 4 and records[("hook", fenced)].by == "a"
        hang = records[("hang", fenced)]
        assert hang.tried == 1 and "did not finish within 0.3s and was killed" in hang.error
        before = (await store.range(KEYS.root_prefix)).revision
        await event(store, "a", "audit", "somebody did something")  # not an alert
        for _ in range(3):
            await a.step()
        assert (await store.range(KEYS.root_prefix)).revision == before + 1  # no write echoes
        assert dict(((s, o), n) for s, o, n in a.duty.frozen()) == {
            ("hang", "failed"): 1, ("hook", "delivered"): 2, ("hook", "retry"): 6,
        }  # fmt: skip
        (sink, cumulative, total), *others = a.duty.latency.frozen()  # delivered ones only
        assert (sink, cumulative[-1], others) == ("hook", 2, []) and total > 0.0
    finally:
        hook.close()


async def test_a_dead_owners_duty_is_taken_by_exactly_one_and_delivered(store: Store) -> None:
    hook = Hook(fail_first=10**6).start()  # fails while a, the owner, lives
    try:
        spec = spec_for(hook.url)
        a, b, c = (Peer(store, n, spec) for n in "abc")
        for p in (a, b, c):
            await p.register()
        await a.lead()
        await a.step()
        started = await event(store, "b", "start", "started web: assigned", "web")
        await a.step()  # a writes the duty, owned by a, and tries it at once: a 500
        state = read_alert_state(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        assert [(r.sink, r.duty.owner, r.duty.tried) for r in state.duties] == [("hook", "a", 1)]
        await store.revoke(a.lease)  # a is killed -9: its registration and controller key go
        hook.fail_first = 0
        await asyncio.gather(b.step(), c.step())  # both see the orphan; one compare-and-swap wins
        state = read_alert_state(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        (row,) = state.duties
        assert row.duty.owner in ("b", "c") and isinstance(row.duty, DutyRecord)
        logs = await until_delivered(store, [b, c], 1)
        assert logs == [("hook", started, "delivered")]
        (done,) = read_deliveries(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        assert done[2].by == row.duty.owner and done[2].tried == 2  # a's try counted
        assert hook.delivered() == {f"al/hook/{started}": 1}
        # a deposed controller (its key gone with its lease) writes no duty
        await event(store, "b", "start", "started web again", "web")
        await a.step()
        state = read_alert_state(KEYS, (await store.range(KEYS.root_prefix)).kvs)
        assert state.duties == ()
    finally:
        hook.close()
