"""The RabbitMQ records on a real etcd: reports, run records, and the force-boot claim that
exactly one of many concurrent claimers wins (DESIGN rule 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.core.rabbit import Cluster, ForceBootClaim, NodeReport, Policy, decide
from corral.records.rabbit import (
    RabbitKeys,
    claim_force_boot,
    read_state,
    spent_claims,
    write_report,
    write_running,
)
from corral.store import Keys, Store
from corral.store.lab import EtcdLab, etcd_lab

pytestmark = pytest.mark.etcd
NODES = ("a", "b", "c")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[EtcdLab]:
    async with etcd_lab(tmp_path, 1) as lab:
        yield lab


async def _controller(store: Store, keys: Keys, name: str = "ctl") -> int:
    """Make ``name`` the controller; its fencing token (the key's create revision)."""
    lease = await store.grant(30)
    await store.put(keys.controller, name.encode(), lease.id)
    kv = await store.get(keys.controller)
    assert kv is not None
    return kv.create_revision


def _claim(node: str, outage: int) -> ForceBootClaim:
    return ForceBootClaim(outage, node, 1000.0, f"test: {node} force-boots")


async def test_records_round_trip_into_a_decision(lab: EtcdLab) -> None:
    store = lab.store()
    try:
        rkeys = RabbitKeys(Keys("lab"), "rabbit")
        lease = await store.grant(30)
        await write_running(store, rkeys, "a", "id-a", frozenset(NODES), 10.0)
        await write_running(store, rkeys, "b", "id-b", frozenset("bc"), 11.0)
        seq_c = await write_running(store, rkeys, "c", "id-c", frozenset("c"), 12.0)
        for node in "ab":
            report = NodeReport(node, "stopped", f"id-{node}", frozenset(NODES), since=5.0)
            await write_report(store, rkeys, report, lease.id)
        await store.put(rkeys.report("c"), b'{"state": "exploded"}', lease.id)  # skipped
        state = await read_state(store, rkeys)
        assert set(state.reports) == {"a", "b"}
        assert state.reports["a"].members == frozenset(NODES)
        assert state.records["c"].seq == seq_c and state.records["c"].running == {"c"}
        plan = decide(Cluster(NODES, state.reports, state.records), 6.0)
        assert plan.outage == seq_c and plan.last_running == {"c"}
        assert {d.action for d in plan.decisions.values()} == {"wait"}
        await store.revoke(lease.id)  # the node lease goes: so do the reports, not the records
        state = await read_state(store, rkeys)
        assert not state.reports and set(state.records) == set(NODES)
    finally:
        await store.close()


async def test_exactly_one_of_many_concurrent_claimers_wins(lab: EtcdLab) -> None:
    keys = Keys("lab")
    rkeys = RabbitKeys(keys, "rabbit")
    stores = [lab.store() for _ in range(8)]
    try:
        token = await _controller(stores[0], keys)
        outage = 42
        claims = [_claim(NODES[i % 3], outage) for i in range(len(stores))]
        won = await asyncio.gather(
            *(claim_force_boot(s, rkeys, c, token) for s, c in zip(stores, claims, strict=True))
        )
        assert sum(won) == 1, won
        winner = claims[won.index(True)]
        state = await read_state(stores[0], rkeys)
        assert state.claims == {outage: winner}
        # once claimed, nobody claims that outage again, the winner included
        assert not await claim_force_boot(stores[1], rkeys, _claim("a", outage), token)
        # a deposed controller (another controller key, another token) claims nothing
        await stores[0].delete(keys.controller)
        new_token = await _controller(stores[0], keys, "ctl2")
        assert not await claim_force_boot(stores[2], rkeys, _claim("b", 43), token)
        assert await claim_force_boot(stores[2], rkeys, _claim("b", 43), new_token)
        state = await read_state(stores[0], rkeys)
        assert {o: c.node for o, c in state.claims.items()} == {42: winner.node, 43: "b"}
        assert spent_claims(rkeys, state) == []  # no run record newer than either outage
    finally:
        for s in stores:
            await s.close()


async def test_the_plan_follows_the_claim_in_the_store(lab: EtcdLab) -> None:
    """decide -> claim -> decide: the claimed node force-boots; no second claim is planned."""
    store = lab.store()
    keys = Keys("lab")
    rkeys = RabbitKeys(keys, "rabbit")
    try:
        token = await _controller(store, keys)
        await write_running(store, rkeys, "c", "id-c", frozenset(NODES), 0.5)  # older
        await write_running(store, rkeys, "a", "id-a", frozenset("ab"), 1.0)
        await write_running(store, rkeys, "b", "id-b", frozenset("b"), 2.0)  # b stopped last
        reports = {n: NodeReport(n, "stopped", f"id-{n}", frozenset(NODES)) for n in "ac"}
        state = await read_state(store, rkeys)
        cluster = Cluster(NODES, reports, state.records, {"b": "fenced"})
        plan = decide(cluster, 500.0, Policy(force_boot_after=60))
        assert plan.claim is not None and plan.claim.node == "a"
        assert await claim_force_boot(store, rkeys, plan.claim, token)
        state = await read_state(store, rkeys)
        again = decide(
            Cluster(
                NODES, reports, state.records, {"b": "fenced"}, claim=state.claim_of(plan.outage)
            ),
            900.0,
            Policy(force_boot_after=60),
        )
        assert again.claim is None
        assert [d.node for d in again.decisions.values() if d.action == "force_boot"] == ["a"]
    finally:
        await store.close()
