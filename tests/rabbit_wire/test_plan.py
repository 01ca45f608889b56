"""The controller's RabbitMQ step: the spec kind, the pure gate on promotions, and real
Controllers on the memory store writing the plan, and the force-boot claim in the same
transaction as the plan that names it (DESIGN rule 6: one force_boot per outage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.agent.controller import Controller
from corral.cli.main import cli
from corral.core.clock import ManualClock
from corral.core.rabbit import NodeReport, Plan, decide
from corral.core.rabbit.decide import Cluster
from corral.core.rabbit.gate import gate
from corral.core.scheduler.model import Instance
from corral.records import AssignRecord, FencedRecord
from corral.records import encode as dump
from corral.records.rabbit import (
    RabbitKeys,
    read_state,
    spent_claims,
    write_report,
    write_running,
)
from corral.records.rabbit_plan import PlanRecord, plan_key
from corral.spec import SpecError, load_spec_text
from corral.store import Keys, MemoryStore

NODES = ("mq1", "mq2", "mq3")
SPEC = """\
cluster: c1
nodes:
  mq1: {address: 198.18.0.21}
  mq2: {address: 198.18.0.22}
  mq3: {address: 198.18.0.23}
resources:
  rabbitmq:
    rabbitmq: {erlang_cookie: {file: /etc/corral/cookie}, force_boot_after: 60s}
"""


def test_the_kind_is_promotable_with_every_broker_promoted_and_needs_a_cookie() -> None:
    res = load_spec_text(SPEC).resources["rabbitmq"]
    assert res.kind == "rabbitmq" and res.mode == "promotable" and res.promoted == 3
    assert res.rabbitmq is not None and res.rabbitmq.force_boot_after == 60.0
    with pytest.raises(SpecError, match="erlang_cookie"):
        load_spec_text(SPEC.replace("erlang_cookie: {file: /etc/corral/cookie}, ", ""))
    with pytest.raises(SpecError, match="promotable"):
        load_spec_text(SPEC + "    mode: active-active\n")


def stopped(node: str, data: bool = True) -> NodeReport:
    if not data:
        return NodeReport(node, "stopped")
    return NodeReport(node, "stopped", f"id-{node}", frozenset(NODES), since=1000.0)


def held(plan: Plan, reports: dict[str, NodeReport]) -> dict[str, str]:
    assigned = [Instance("rabbitmq", n, "promoted") for n in NODES]
    return {i.node: i.role for i in gate("rabbitmq", assigned, plan, reports).instances}


def test_the_gate_holds_waiting_stopped_nodes_and_never_a_booting_or_paused_one() -> None:
    reports = {n: stopped(n, data=False) for n in NODES}  # formation: mq1 first
    plan = decide(Cluster(NODES, reports), 0.0)
    assert held(plan, reports) == {"mq1": "promoted", "mq2": "started", "mq3": "started"}
    got = gate("rabbitmq", [Instance("rabbitmq", "mq2", "promoted")], plan, reports)
    assert got.note is not None and "mq2 waits" in got.note and "mq1" in got.note
    paused = {**reports, "mq1": NodeReport("mq1", "running", "i", frozenset(NODES))}
    paused["mq2"] = NodeReport("mq2", "paused", "i2", frozenset(NODES))
    plan = decide(Cluster(NODES, paused), 0.0)
    assert plan.decisions["mq2"].action == "wait"
    assert held(plan, paused)["mq2"] == "promoted"  # demoting would stop a coming-back broker
    no_report = decide(Cluster(NODES, {"mq1": reports["mq1"]}), 0.0)
    assert held(no_report, {"mq1": reports["mq1"]})["mq3"] == "started"


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(1000.0)
        self.wall = 1000.0
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(SPEC)
        self.rkeys = RabbitKeys(self.keys, "rabbitmq")
        self.leases: dict[str, int] = {}
        self.regs: dict[str, int] = {}

    async def register(self, node: str) -> None:
        self.leases[node] = (await self.store.grant(3600)).id
        self.regs[node] = await self.store.put(
            self.keys.node(node), dump({}), lease=self.leases[node]
        )

    def controller(self, node: str = "mq2") -> Controller:
        return Controller(
            self.store, self.keys, node, lambda: self.spec, wall=lambda: self.wall,
            clock=self.clock,
        )  # fmt: skip

    async def roles(self) -> dict[str, str]:
        kv = await self.store.get(self.keys.assign("rabbitmq"))
        record = AssignRecord.parse(kv.value) if kv is not None else None
        return {i.node: i.role for i in record.instances} if record else {}


async def outage_world() -> World:
    """mq1 ran last (its run record is the newest) and is fenced; mq2, mq3 report data."""
    w = World()
    for node in NODES:
        await w.register(node)
    await write_running(w.store, w.rkeys, "mq3", "id-mq3", frozenset(NODES), 900.0)
    await write_running(w.store, w.rkeys, "mq2", "id-mq2", frozenset({"mq1", "mq2"}), 950.0)
    await write_running(w.store, w.rkeys, "mq1", "id-mq1", frozenset({"mq1"}), 990.0)
    fence = FencedRecord(w.regs["mq1"], 995.0, "ipmi")
    await w.store.put(w.keys.fenced("mq1"), fence.dump())
    await w.store.delete(w.keys.node("mq1"))
    for node in ("mq2", "mq3"):
        report = stopped(node)
        await write_report(w.store, w.rkeys, report, w.leases[node])
    return w


async def test_one_force_boot_claim_per_outage_written_with_its_plan_and_event() -> None:
    w = await outage_world()
    ctl = w.controller()
    assert await ctl.campaign(w.leases["mq2"])
    await ctl.step()
    plan = PlanRecord.read((await w.store.get(plan_key(w.rkeys))).value)  # type: ignore[union-attr]
    assert {d.node: d.action for d in plan.decisions} == {"mq2": "wait", "mq3": "wait"}
    assert (await read_state(w.store, w.rkeys)).claims == {}
    assert set((await w.roles()).values()) <= {"started"}  # nobody starts out of order
    written = (await w.store.get(plan_key(w.rkeys))).mod_revision  # type: ignore[union-attr]
    await ctl.step()  # the same inputs: the same plan, not written again
    assert (await w.store.get(plan_key(w.rkeys))).mod_revision == written  # type: ignore[union-attr]
    w.wall += 61.0  # force_boot_after passed: mq1 (the last-running set) stays gone
    await ctl.step()
    state = await read_state(w.store, w.rkeys)
    ((outage, claim),) = state.claims.items()
    plan = PlanRecord.read((await w.store.get(plan_key(w.rkeys))).value)  # type: ignore[union-attr]
    assert plan.outage == outage and claim.node == "mq2"  # its run record is the newest
    assert {d.node: d.action for d in plan.decisions} == {"mq2": "force_boot", "mq3": "wait"}
    assert (await w.roles()).get("mq2") == "promoted" and (await w.roles()).get("mq3") != "promoted"
    events = [kv.value for kv in (await w.store.range(w.keys.prefix("events"))).kvs]
    assert sum(b'"force-boot"' in e for e in events) == 1
    for _ in range(3):  # later steps, and a controller that takes over, never claim again
        w.wall += 100.0
        await ctl.step()
    other = w.controller("mq3")
    ctl.resign()
    await w.store.delete(w.keys.controller)
    assert await other.campaign(w.leases["mq3"])
    await other.step()
    assert len((await read_state(w.store, w.rkeys)).claims) == 1


async def test_a_deposed_controller_writes_no_plan_and_no_claim() -> None:
    w = await outage_world()
    ctl = w.controller()
    assert await ctl.campaign(w.leases["mq2"])
    await w.store.delete(w.keys.controller)  # deposed (its key gone: lease lost)
    other = w.controller("mq3")
    assert await other.campaign(w.leases["mq3"])
    w.wall += 61.0
    said = await ctl.step()
    assert "not written" in said
    assert (await read_state(w.store, w.rkeys)).claims == {}
    await other.step()
    assert [c.node for c in (await read_state(w.store, w.rkeys)).claims.values()] == ["mq2"]


def test_validate_explain_says_the_rabbitmq_settings(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    result = CliRunner().invoke(cli, ["validate", "--explain", str(path)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "net_ticktime 12s" in result.output and "force_boot after 1m" in result.output


async def test_a_replaced_node_waits_until_a_running_member_forgets_it_then_joins() -> None:
    w = World()
    for node in NODES:
        await w.register(node)
        await write_running(w.store, w.rkeys, node, f"id-{node}", frozenset(NODES), 900.0)
    everyone = frozenset(NODES)
    for node in ("mq1", "mq2"):
        up = NodeReport(node, "running", f"id-{node}", everyone, frozenset({"mq1", "mq2"}))
        await write_report(w.store, w.rkeys, up, w.leases[node])
    await write_report(w.store, w.rkeys, NodeReport("mq3", "stopped"), w.leases["mq3"])  # new disks
    ctl = w.controller()
    assert await ctl.campaign(w.leases["mq2"])
    await ctl.step()
    plan = PlanRecord.read((await w.store.get(plan_key(w.rkeys))).value)  # type: ignore[union-attr]
    mq1, mq3 = plan.decision("mq1"), plan.decision("mq3")
    assert mq1 is not None and (mq1.action, mq1.peer) == ("forget", "mq3")
    assert mq3 is not None and mq3.action == "wait" and (await w.roles())["mq3"] == "started"
    for node in ("mq1", "mq2"):  # forgotten: the running members know two nodes now
        left = frozenset({"mq1", "mq2"})
        up = NodeReport(node, "running", f"id-{node}", left, left)
        await write_report(w.store, w.rkeys, up, w.leases[node])
    await ctl.step()
    plan = PlanRecord.read((await w.store.get(plan_key(w.rkeys))).value)  # type: ignore[union-attr]
    mq3 = plan.decision("mq3")
    assert mq3 is not None and (mq3.action, mq3.peer, mq3.regrow) == ("join", "mq1", True)
    assert (await w.roles())["mq3"] == "promoted"


async def _plan(w: World) -> dict[str, str]:
    kv = await w.store.get(plan_key(w.rkeys))
    assert kv is not None
    return {d.node: d.action for d in PlanRecord.read(kv.value).decisions}


async def test_a_spent_claim_is_trimmed_once_the_booted_cluster_serves_and_never_reclaimed() -> (
    None
):
    """Rule 6 with the trim: the claim of the current outage stays (even in later steps);
    once the force-booted node serves and writes its run record the outage is over and the
    claim goes; the next outage is a new one (another id), and the old one is never planned
    again, so no second node force-boots it."""
    w = await outage_world()
    ctl = w.controller()
    assert await ctl.campaign(w.leases["mq2"])
    w.wall += 61.0
    await ctl.step()
    state = await read_state(w.store, w.rkeys)
    ((outage, claim),) = state.claims.items()
    assert claim.node == "mq2" and spent_claims(w.rkeys, state) == []
    await ctl.step()  # not served yet: the claim of the current outage stays
    assert list((await read_state(w.store, w.rkeys)).claims) == [outage]
    running = frozenset({"mq2"})  # mq2 force-booted and serves: its run record, its report
    seq = await write_running(w.store, w.rkeys, "mq2", "id-mq2", running, w.wall)
    up = NodeReport("mq2", "running", "id-mq2", frozenset(NODES), running)
    await write_report(w.store, w.rkeys, up, w.leases["mq2"])
    await ctl.step()
    assert (await read_state(w.store, w.rkeys)).claims == {}
    assert await _plan(w) == {"mq2": "run", "mq3": "start"}
    # mq2 fails again before mq3 ran, and is fenced: a new outage (mq2's record), not the old
    await w.store.put(w.keys.fenced("mq2"), FencedRecord(w.regs["mq2"], w.wall, "ipmi").dump())
    await w.store.delete(w.keys.node("mq2"))
    await w.store.delete(w.rkeys.report("mq2"))
    for _ in range(3):
        w.wall += 100.0
        await ctl.step()
    state = await read_state(w.store, w.rkeys)
    assert outage not in state.claims  # the trimmed outage is never claimed again
    assert set(state.claims) <= {seq}, state.claims  # at most the new outage's, one node
    plan = PlanRecord.read((await w.store.get(plan_key(w.rkeys))).value)  # type: ignore[union-attr]
    assert plan.outage == seq
