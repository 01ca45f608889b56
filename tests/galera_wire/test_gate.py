"""The controller's gate on Galera promotions: the pure gate, and real Controllers on the
memory store driving a formation with the fake servers (rule 6: one claim, one bootstrap)."""

from __future__ import annotations

from corral.agent.controller import Controller
from corral.core.clock import ManualClock
from corral.core.galera.gate import Claim, GateInputs, gate
from corral.core.galera.state import GraState, NodeState, Position
from corral.core.scheduler.model import Instance
from corral.drivers.galera_member import PRIMARY_DETAIL
from corral.records import FencedRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.records.galera import BootstrapClaim, ReportRecord, read_galera
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.galera_wire.fakes import UUID
from tests.spec.test_galera_spec import HEAD

NODES = ("db1", "db2", "db3")


def state(node: str, seqno: int, *, safe: bool = False) -> NodeState:
    return NodeState(node, GraState(Position(UUID, seqno), safe), None, None, False)


def inputs(**kw: object) -> GateInputs:
    base: dict[str, object] = {
        "resource": "galera",
        "expected": NODES,
        "assigned": [Instance("galera", n, "promoted") for n in NODES],
        "reports": {n: state(n, s) for n, s in zip(NODES, (5, 9, 7), strict=True)},
        "primary": (),
        "claim": None,
        "gone": {},
        "waiting_since": 0.0,
        "now": 0.0,
        "wait": 60.0,
    }
    return GateInputs(**{**base, **kw})  # type: ignore[arg-type]


def roles(instances: tuple[Instance, ...]) -> dict[str, str]:
    return {i.node: i.role for i in instances}


def test_with_every_report_the_most_advanced_node_alone_is_promoted_with_a_claim() -> None:
    got = gate(inputs())
    assert roles(got.instances) == {"db1": "started", "db2": "promoted", "db3": "started"}
    assert got.bootstrap is not None and got.bootstrap.node == "db2" and got.note is None


def test_a_missing_report_holds_every_promotion_with_the_reason() -> None:
    got = gate(inputs(reports={"db1": state("db1", 5), "db2": state("db2", 9)}))
    assert set(roles(got.instances).values()) == {"started"} and got.bootstrap is None
    assert got.note is not None and "db3" in got.note and "never assumed behind" in got.note


def test_a_fenced_node_is_waited_for_then_a_majority_bootstraps_and_a_minority_never() -> None:
    reports = {"db1": state("db1", 5), "db2": state("db2", 9)}
    gone = {"db3": "fenced"}
    waiting = gate(inputs(reports=reports, gone=gone, now=30.0))
    assert waiting.bootstrap is None and waiting.note and "waiting up to 60s" in waiting.note
    late = gate(inputs(reports=reports, gone=gone, now=61.0))
    assert late.bootstrap is not None and late.bootstrap.partial and late.bootstrap.node == "db2"
    minority = gate(
        inputs(reports={"db1": state("db1", 5)}, gone={"db2": "fenced", "db3": "fenced"}, now=99)
    )
    assert (
        minority.bootstrap is None
        and minority.note
        and "minority never bootstraps" in minority.note
    )


def test_under_a_claim_only_the_claimant_is_promoted_and_a_void_claim_holds_everyone() -> None:
    got = gate(inputs(claim=Claim("db3")))
    assert roles(got.instances) == {"db1": "started", "db2": "started", "db3": "promoted"}
    assert got.bootstrap is None  # never a second claim
    void = gate(inputs(claim=Claim("db3", "db3, which claimed the bootstrap, was fenced")))
    assert set(roles(void.instances).values()) == {"started"} and void.bootstrap is None


def test_once_the_claimant_is_primary_its_claim_is_cleared_then_everyone_joins() -> None:
    got = gate(inputs(primary=("db3",), claim=Claim("db3")))
    assert got.clear  # rule 1g: no member joins while a claim exists
    assert roles(got.instances) == {"db1": "started", "db2": "started", "db3": "promoted"}
    after = gate(inputs(primary=("db3",)))
    assert set(roles(after.instances).values()) == {"promoted"} and not after.clear
    assert not gate(inputs(primary=("db1",), claim=Claim("db3"))).clear
    assert gate(inputs(primary=("db1",))).bootstrap is None


def test_a_chosen_node_the_scheduler_did_not_promote_holds_everything() -> None:
    assigned = [Instance("galera", "db1", "promoted"), Instance("galera", "db3", "promoted")]
    got = gate(inputs(assigned=assigned))
    assert set(roles(got.instances).values()) == {"started"} and got.bootstrap is None
    assert got.note and "db2 should bootstrap" in got.note


# --- real controllers on the memory store --------------------------------------------------

SPEC = HEAD + "    galera: {}\n    on: {role: db}\n"


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(1000.0)
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(SPEC)
        self.leases: dict[str, int] = {}

    async def register(self, node: str) -> None:
        self.leases[node] = (await self.store.grant(30)).id
        await self.store.put(self.keys.node(node), dump({}), lease=self.leases[node])

    async def report(self, node: str, seqno: int) -> None:
        record = ReportRecord.from_state(state(node, seqno))
        key = self.keys.galera_report("galera", node)
        await self.store.put(key, record.dump(), lease=self.leases[node])

    async def runs(self, node: str, role: str) -> None:
        record = StatusRecord((StatusInstance(role, "healthy", PRIMARY_DETAIL),))
        await self.store.put(self.keys.status(node, "galera"), record.dump(), self.leases[node])

    async def controller(self, node: str) -> Controller:
        c = Controller(
            self.store, self.keys, node, lambda: self.spec, wall=lambda: 5.0, clock=self.clock
        )
        assert await c.campaign(self.leases[node])
        return c

    async def assigned(self) -> dict[str, str]:
        kv = await self.store.get(self.keys.assign("galera"))
        assert kv is not None
        from corral.records import AssignRecord

        record = AssignRecord.parse(kv.value)
        assert record is not None
        return {i.node: i.role for i in record.instances}

    async def claim(self) -> BootstrapClaim | None:
        got = read_galera(
            self.keys, "galera", (await self.store.range(self.keys.galera("galera"))).kvs
        )
        return got.claim[0] if got.claim else None

    async def events(self) -> list[str]:
        kvs = (await self.store.range(self.keys.prefix("events"))).kvs
        return [kv.value.decode() for kv in kvs]


async def test_controller_forms_a_cluster_one_bootstrap_then_joins_then_clears_the_claim() -> None:
    w = World()
    for n in NODES:
        await w.register(n)
    c = await w.controller("db1")
    await c.step()
    assert set((await w.assigned()).values()) == {"started"}  # no report yet: nothing promoted
    for n in NODES:
        await w.runs(n, "started")
    await c.step()
    assert set((await w.assigned()).values()) == {"started"}
    assert any("waiting for every node's position" in e for e in await w.events())
    for n, seqno in zip(NODES, (5, 9, 7), strict=True):
        await w.report(n, seqno)
    await c.step()
    claim = await w.claim()
    assert claim is not None and claim.node == "db2" and claim.by == "db1"
    assert await w.assigned() == {"db1": "started", "db2": "promoted", "db3": "started"}
    assert any('"bootstrap"' in e for e in await w.events())
    claim_kv = await w.store.get(w.keys.galera_bootstrap("galera"))
    assert claim_kv is not None and claim_kv.lease == w.leases["db2"]  # under the claimant's
    # a second controller (after a failover) reads the claim and never claims again
    await c.step()
    assert await w.assigned() == {"db1": "started", "db2": "promoted", "db3": "started"}
    await w.runs("db2", "promoted")  # db2 bootstrapped: Primary
    await c.step()
    assert await w.claim() is None  # cleared once the claimant is Primary
    assert await w.assigned() == {"db1": "started", "db2": "promoted", "db3": "started"}
    await c.step()
    assert set((await w.assigned()).values()) == {"promoted"}  # then the others join


async def test_a_fenced_claimant_voids_the_claim_and_nobody_else_is_told_to_bootstrap() -> None:
    w = World()
    for n in NODES:
        await w.register(n)
        await w.runs(n, "started")
    for n, seqno in zip(NODES, (5, 9, 7), strict=True):
        await w.report(n, seqno)
    c = await w.controller("db1")
    await c.step()
    assert (await w.claim()) is not None
    reg = await w.store.get(w.keys.node("db2"))
    assert reg is not None
    await w.store.put(w.keys.fenced("db2"), FencedRecord(reg.mod_revision).dump())
    await c.step()
    roles_now = await w.assigned()
    assert roles_now.get("db1") != "promoted" and roles_now.get("db3") != "promoted"
    claim = await w.claim()
    assert claim is not None and claim.node == "db2"  # it goes only with db2's lease (rule 2)
