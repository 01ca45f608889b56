"""Real agents (in one process, on a real etcd) running a real three-node Galera cluster, each
server in a network namespace of its own (the lab of ``tests/galera``, under names of our
own). Each agent drives its member (:class:`~corral.drivers.galera_member.GaleraMember`) and
one of them runs the controller that gates the promotions; the tests share the cluster and
follow each other:

1. formation from empty data dirs: one bootstrap, every node synced, the claim cleared, one
   writer named, a write on every node, every node's report in the store;
2. every mariadbd killed -9 at once under writes: the agents start their members again
   (recovered positions reported), exactly one more bootstrap, every acknowledged write on
   every node (before the members' confirmation of a Primary, a member joined a vanished
   cluster on a stale record here and blocked the recovery for its 180 s start timeout);
3. db3 powered off (its agent stopped, its mariadbd killed -9) and recorded fenced: the
   survivors' status polls evict it (rule 2, ``evs.evict``), the view drops it without
   waiting for ``evs.suspect_timeout``, and they commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from corral.agent.node import Agent
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.galera import GaleraServer
from corral.records import FencedRecord
from corral.records.galera import read_galera
from corral.spec import Resource, Spec, load_spec_text
from corral.store import EtcdStore, Keys
from corral.store.lab import etcd_lab
from tests.agent.fakes import ScriptedChecker, fake_factory
from tests.galera import lab as galera_lab_module
from tests.galera.conftest import real_server_marks
from tests.galera.lab import GaleraLab, galera_lab, kill9, wait_for
from tests.galera_wire.fakes import agents_spec

pytestmark = real_server_marks(timeout=300)
NODES = ("db1", "db2", "db3")
KEYS = Keys("ra")
SPEC = agents_spec("ra", "lan", "198.18.73", "  galera: {galera: {}}\n")


@pytest.fixture(scope="module")
def own_names() -> Iterator[None]:
    """Namespaces and addresses of our own (tests/galera's lab may run at the same time)."""
    m = galera_lab_module
    saved = (m.SWITCH, m.BRIDGE, m.PREFIX, m.SUBNET)
    m.SWITCH, m.BRIDGE, m.PREFIX, m.SUBNET = "cgw-sw", "cgw-br", "cgw-", "198.18.73"
    yield
    m.SWITCH, m.BRIDGE, m.PREFIX, m.SUBNET = saved


@dataclass
class Cluster:
    lab: GaleraLab
    store: EtcdStore  # the test's own client
    agents: dict[str, Agent] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def events(self, kind: str) -> list[str]:
        kvs = (await self.store.range(KEYS.prefix("events"))).kvs
        return [kv.value.decode() for kv in kvs if f'"{kind}"' in kv.value.decode()]


def servers_of(lab: GaleraLab) -> Callable[[str, Resource, NodeContext, Spec], GaleraServer]:
    return lambda name, res, ctx, spec: lab.server(NODES.index(ctx.name) + 1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    own_names: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    tmp = tmp_path_factory.mktemp("galera-agents")
    async with galera_lab(tmp, start_timeout=180) as lab, etcd_lab(tmp / "etcd", 1) as etcd:
        made = Cluster(lab, etcd.store())
        stores = [etcd.store(timeout=2.0, attempt_timeout=1.0) for _ in NODES]
        try:
            for node, store in zip(NODES, stores, strict=True):
                agent = Agent(
                    load_spec_text(SPEC), node, store, state_dir=tmp / node,
                    driver_factory=fake_factory({}), checker=ScriptedChecker(),
                )  # fmt: skip
                agent.act.galera_server = servers_of(lab)
                made.agents[node] = agent
                made.tasks[node] = asyncio.create_task(agent.run())
            yield made
        finally:
            for task in made.tasks.values():
                task.cancel()
            for task in made.tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for store in [*stores, made.store]:
                await store.close()


async def synced(lab: GaleraLab, size: int = 3) -> None:
    for server in lab.servers[:size]:
        await wait_for(server, lambda s: s.healthy and s.cluster_size == size, timeout=240)


async def records_settled(c: Cluster) -> None:
    """Until the claim is cleared and a writer named (bounded)."""
    for _ in range(300):
        kvs = (await c.store.range(KEYS.galera("galera"))).kvs
        got = read_galera(KEYS, "galera", kvs)
        if got.claim is None and got.writer is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"claim {got.claim}, writer {got.writer}")


async def rows(server: GaleraServer) -> set[int]:
    await server.execute("SET SESSION wsrep_sync_wait = 1")
    return {int(r[0]) for r in await server.execute("SELECT id FROM w.t")}


async def test_real_agents_form_a_cluster_with_one_bootstrap(cluster: Cluster) -> None:
    lab = cluster.lab
    await synced(lab)
    await records_settled(cluster)
    assert len(await cluster.events("bootstrap")) == 1
    kvs = (await cluster.store.range(KEYS.galera("galera"))).kvs
    assert set(read_galera(KEYS, "galera", kvs).reports) == set(NODES)  # under each lease
    await lab.server(3).execute("CREATE DATABASE w")
    await lab.server(3).execute("CREATE TABLE w.t (id INT PRIMARY KEY)")
    await lab.server(3).execute("INSERT INTO w.t VALUES (7)")
    for server in lab.servers:
        assert await rows(server) == {7}


async def _write_until_killed(lab: GaleraLab, acked: list[int]) -> None:
    for i in range(100, 100_000):  # bounded: the kill comes after 50
        try:
            await lab.server(1).execute("INSERT INTO w.t VALUES (%s)", (i,))
        except DriverError:
            return
        acked.append(i)


async def test_every_node_killed_comes_back_by_the_agents_with_every_acked_write(
    cluster: Cluster,
) -> None:
    lab = cluster.lab
    if not all(s.running() for s in lab.servers):
        pytest.skip("needs the cluster the formation test made")
    bootstraps = len(await cluster.events("bootstrap"))
    acked: list[int] = []
    writer = asyncio.create_task(_write_until_killed(lab, acked))
    while len(acked) < 50:
        await asyncio.sleep(0.01)
        assert not writer.done(), "the writer stopped before the kill"
    await asyncio.gather(*(kill9(s) for s in lab.servers))
    await asyncio.wait_for(writer, 30)
    await synced(lab)
    await records_settled(cluster)
    assert len(await cluster.events("bootstrap")) == bootstraps + 1  # exactly one
    for server in lab.servers:
        assert set(acked) <= await rows(server), f"{server.name} lost acknowledged writes"


async def test_a_fenced_member_is_evicted_by_the_survivors_polls(cluster: Cluster) -> None:
    lab = cluster.lab
    if not all(s.running() for s in lab.servers):
        pytest.skip("needs the cluster the tests before made")
    (uuid3,) = [u for u, n in await lab.server(1).view() if n == "db3"]
    reg = cluster.agents["db3"].registration
    task = cluster.tasks["db3"]
    task.cancel()  # db3 powered off: its agent first, then its server
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await kill9(lab.server(3))
    assert reg is not None
    await cluster.store.put(KEYS.fenced("db3"), FencedRecord(reg).dump())
    await wait_for(lab.server(1), lambda s: s.cluster_size == 2 and s.healthy, timeout=30)
    evict_list = await lab.server(2).execute("SHOW STATUS LIKE 'wsrep_evs_evict_list'")
    assert evict_list == [("wsrep_evs_evict_list", uuid3)]  # spread to every member
    await lab.server(2).execute("INSERT INTO w.t VALUES (8)")  # the survivors commit
