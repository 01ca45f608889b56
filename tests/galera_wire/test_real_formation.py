"""A real three-node Galera cluster formed by corral's decisions: a Controller on the memory
store gates the promotions (:mod:`corral.core.galera.gate`), and each node's
:class:`GaleraMember` over a real :class:`GaleraServer` (in its own network namespace) does
what its assignment says, as its agent would: start (mariadbd stopped, state reported), then
promote (bootstrap under the claim, or join the Primary). One bootstrap, every node synced,
a write on every node, the claim cleared, one writer named. Then (the second test needs the
first) db3 is killed -9 and recorded fenced: db1's next status poll evicts it (rule 2,
``evs.evict``) and the survivors' view drops it without waiting for ``evs.suspect_timeout``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from corral.agent.assigned import Registration
from corral.agent.controller import Controller
from corral.agent.galera import StoreGaleraLink
from corral.core.clock import ManualClock
from corral.drivers.base import DriverError
from corral.drivers.galera_member import PRIMARY_DETAIL, GaleraMember
from corral.records import AssignRecord, FencedRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.records.galera import read_galera
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.galera import lab as galera_lab_module
from tests.galera.conftest import real_server_marks
from tests.galera.lab import GaleraLab, galera_lab, kill9, wait_for
from tests.galera_wire.test_writer import BALANCED

pytestmark = real_server_marks(timeout=300)
NODES = ("db1", "db2", "db3")
FORMED: list[Agents] = []
CONTROLLER: list[Controller] = []
EVICTED_S: list[float] = []  # seconds from the fence record to a view of two (printed)


@pytest.fixture(scope="module")
def own_names() -> Iterator[None]:
    """Namespaces and addresses of our own (tests/galera's lab may run at the same time)."""
    saved = (galera_lab_module.SWITCH, galera_lab_module.PREFIX, galera_lab_module.SUBNET)
    galera_lab_module.SWITCH, galera_lab_module.PREFIX = "cgw-sw", "cgw-"
    galera_lab_module.SUBNET = "198.18.73"
    yield
    galera_lab_module.SWITCH, galera_lab_module.PREFIX, galera_lab_module.SUBNET = saved


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(
    own_names: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GaleraLab]:
    async with galera_lab(tmp_path_factory.mktemp("galera-wire"), start_timeout=180) as made:
        yield made


class Agents:
    """What the agents of db1..db3 do with their assignments, one round at a time."""

    def __init__(self, lab: GaleraLab) -> None:
        self.clock = ManualClock(1000.0)
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(BALANCED)
        self.lab = lab
        self.leases: dict[str, int] = {}
        self.regs: dict[str, int] = {}
        self.members: dict[str, GaleraMember] = {}
        self.roles: dict[str, str] = {}

    async def register(self) -> None:
        for i, node in enumerate(NODES, 1):
            self.leases[node] = (await self.store.grant(3600)).id
            key = self.keys.node(node)
            self.regs[node] = await self.store.put(key, dump({}), lease=self.leases[node])
            link = StoreGaleraLink(
                self.store, self.keys, "galera", self._me(node), self._lease(node), time.time
            )
            self.members[node] = GaleraMember("galera", self.lab.server(i), link)

    def _me(self, node: str) -> Callable[[], Registration]:
        return lambda: Registration(node, self.regs[node])

    def _lease(self, node: str) -> Callable[[], int | None]:
        return lambda: self.leases[node]

    async def round(self) -> None:
        kv = await self.store.get(self.keys.assign("galera"))
        record = AssignRecord.parse(kv.value) if kv is not None else None
        wanted = {i.node: i.role for i in record.instances} if record else {}
        for node, role in wanted.items():
            member, now = self.members[node], self.roles.get(node)
            if now is None:
                await member.start()
                await self._status(node, "started")
            if role == "promoted" and now != "promoted":
                await member.promote()
                await self._status(node, "promoted")

    async def restart(self, node: str) -> float:
        """What ``node``'s agent does with a member whose mariadbd died: start it again
        (stopped, inspected, ``--wsrep-recover`` after a crash, reported) and publish it
        started. Returns the seconds the start took."""
        began = time.monotonic()
        await self.members[node].start()
        took = time.monotonic() - began
        await self._status(node, "started")
        return took

    async def settle(self, controller: Controller, rounds: int = 12) -> None:
        """Controller steps and agent rounds until every member is promoted (bounded), then
        until every server is synced in a view of three; one more step clears the claim and
        names the writer."""
        for _ in range(rounds):
            await controller.step()
            await self.round()
            if len(self.roles) == 3 and set(self.roles.values()) == {"promoted"}:
                break
        else:
            raise AssertionError(f"not every member promoted after {rounds} rounds: {self.roles}")
        for server in self.lab.servers:
            await wait_for(server, lambda s: s.healthy and s.cluster_size == 3, timeout=180)
        await controller.step()

    async def _status(self, node: str, role: str) -> None:
        self.roles[node] = role
        record = StatusRecord((StatusInstance(role, "healthy", PRIMARY_DETAIL),))
        key = self.keys.status(node, "galera")
        await self.store.put(key, record.dump(), lease=self.leases[node])


async def test_the_controller_forms_a_real_cluster_with_one_bootstrap(lab: GaleraLab) -> None:
    agents = Agents(lab)
    await agents.register()
    controller = Controller(
        agents.store, agents.keys, "db1", lambda: agents.spec, wall=time.time, clock=agents.clock
    )
    assert await controller.campaign(agents.leases["db1"])
    for _ in range(8):  # bounded: formation takes four rounds
        await controller.step()
        await agents.round()
        if set(agents.roles.values()) == {"promoted"} and len(agents.roles) == 3:
            break
    assert agents.roles == {n: "promoted" for n in NODES}
    for server in lab.servers:
        await wait_for(server, lambda s: s.healthy and s.cluster_size == 3, timeout=120)
    await controller.step()  # the claimant is Primary: its claim goes; a writer is named
    kvs = (await agents.store.range(agents.keys.galera("galera"))).kvs
    records = read_galera(agents.keys, "galera", kvs)
    assert records.claim is None and records.writer is not None
    events = [
        kv.value.decode() for kv in (await agents.store.range(agents.keys.prefix("events"))).kvs
    ]
    assert sum('"bootstrap"' in e for e in events) == 1
    await lab.server(3).execute("CREATE DATABASE w")
    await lab.server(3).execute("CREATE TABLE w.t (id INT PRIMARY KEY)")
    await lab.server(3).execute("INSERT INTO w.t VALUES (7)")
    for server in lab.servers:
        await server.execute("SET SESSION wsrep_sync_wait = 1")
        assert await server.execute("SELECT id FROM w.t") == [(7,)]
    for node in NODES:  # the reports of the stopped servers, under each node's lease
        assert node in records.reports
    FORMED.append(agents)
    CONTROLLER.append(controller)


async def _write_until_killed(lab: GaleraLab, acked: list[int]) -> None:
    for i in range(100, 100_000):  # bounded: the kill comes after 50
        try:
            await lab.server(1).execute("INSERT INTO w.t VALUES (%s)", (i,))
        except DriverError:
            return
        acked.append(i)


async def test_every_node_killed_comes_back_by_the_decisions_with_every_acked_write(
    lab: GaleraLab,
) -> None:
    """A power cut of the whole cluster under writes, then each agent restarts its member:
    recovered positions reported, one bootstrap claimed and made from the most advanced
    node, the others join once the claim is cleared; nothing acknowledged is lost."""
    assert FORMED, "needs the formed cluster of the test before"
    agents, controller = FORMED[0], CONTROLLER[0]
    acked: list[int] = []
    writer = asyncio.create_task(_write_until_killed(lab, acked))
    while len(acked) < 50:
        await asyncio.sleep(0.01)
        assert not writer.done(), "the writer stopped before the kill"
    await asyncio.gather(*(kill9(s) for s in lab.servers))
    await asyncio.wait_for(writer, 30)
    for node in NODES:
        await agents.restart(node)
    reports = read_galera(
        agents.keys, "galera", (await agents.store.range(agents.keys.galera("galera"))).kvs
    ).reports
    assert all(reports[n].recovered is not None for n in NODES)  # seqno -1: recovered
    bootstraps = len(await events_of(agents, '"bootstrap"'))
    await agents.settle(controller)
    assert len(await events_of(agents, '"bootstrap"')) == bootstraps + 1  # exactly one
    for server in lab.servers:
        await server.execute("SET SESSION wsrep_sync_wait = 1")
        got = {int(r[0]) for r in await server.execute("SELECT id FROM w.t")}
        assert set(acked) <= got, f"{server.name} lost acknowledged writes"


async def events_of(agents: Agents, kind: str) -> list[str]:
    kvs = (await agents.store.range(agents.keys.prefix("events"))).kvs
    return [kv.value.decode() for kv in kvs if kind in kv.value.decode()]


async def test_a_fenced_member_is_evicted_by_a_survivors_poll(lab: GaleraLab) -> None:
    assert FORMED, "needs the formed cluster of the test before"
    agents = FORMED[0]
    (uuid3,) = [u for u, n in await lab.server(1).view() if n == "db3"]
    await kill9(lab.server(3))  # powered off by its fence
    fenced = FencedRecord(agents.regs["db3"]).dump()
    await agents.store.put(agents.keys.fenced("db3"), fenced)
    began = time.monotonic()
    assert (await agents.members["db1"].status()).promoted  # the poll that evicts
    status = await wait_for(lab.server(1), lambda s: s.cluster_size == 2, timeout=30)
    EVICTED_S.append(round(time.monotonic() - began, 2))
    assert status.healthy
    evict_list = await lab.server(2).execute("SHOW STATUS LIKE 'wsrep_evs_evict_list'")
    assert evict_list == [("wsrep_evs_evict_list", uuid3)]  # spread to every member
    await lab.server(2).execute("INSERT INTO w.t VALUES (8)")  # the survivors commit
