"""Rule 1g end to end: real agents (in one process) on a real etcd, their Galera members over
the fake servers (:mod:`tests.galera_wire.fakes`), and etcd killed.

- A cluster the wired controller formed (one bootstrap, the claim cleared, every member
  joined) keeps all three mariadbds through an outage longer than the keep deadline, while an
  active-passive service is self-fenced (rule 1); once etcd is back nothing is restarted and
  there is no second bootstrap.
- A bootstrap under way (the claim still names db1; db2 joined it) when etcd goes: the
  bootstrap node is stopped at its keep deadline (rule 1 and the claim, rule 6), the joined
  member keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.agent.node import Agent
from corral.drivers.base import NodeContext
from corral.records.galera import BootstrapClaim
from corral.spec import Resource, Spec
from corral.store import Keys
from corral.store.lab import EtcdLab, etcd_lab
from tests.agent.fakes import agents_running, until
from tests.galera_wire.fakes import UUID, FakeCluster, FakeServer, agents_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]
NODES = ("db1", "db2", "db3")
KEYS = Keys("outage")
SPEC = agents_spec(
    "outage",
    "local",
    "127.0.0",
    "  galera: {galera: {bootstrap_wait: 1s}}\n  ap: {process: /bin/true, mode: active-passive}\n",
)


@dataclass
class Lab:
    etcd: EtcdLab
    cluster: FakeCluster
    servers: dict[str, FakeServer]
    world: dict[str, bool] = field(default_factory=dict)  # the active-passive service
    agents: dict[str, Agent] = field(default_factory=dict)

    def up(self) -> set[str]:
        return {n for n, s in self.servers.items() if s.up}


def server_factory(lab: Lab) -> Callable[[str, Resource, NodeContext, Spec], FakeServer]:
    return lambda name, res, ctx, spec: lab.servers[ctx.name]


@contextlib.asynccontextmanager
async def running_lab(tmp_path: Path, nodes: tuple[str, ...] = NODES) -> AsyncIterator[Lab]:
    cluster = FakeCluster(seqno=5)
    servers = {n: FakeServer(n, cluster, seqno=5) for n in NODES}
    async with etcd_lab(tmp_path / "etcd", 1, profile="local") as etcd:
        lab = Lab(etcd, cluster, servers)

        def fit(agent: Agent) -> None:
            agent.act.galera_server = server_factory(lab)

        async with agents_running(etcd, SPEC, nodes, tmp_path, lab.world, fit) as agents:
            lab.agents = agents
            yield lab


def all_joined(lab: Lab) -> bool:
    return all("galera" in a.core.joined for a in lab.agents.values())


def past_keep_deadline(lab: Lab, nodes: tuple[str, ...]) -> bool:
    return all(
        not lab.agents[n].core.lease.may_keep(
            lab.agents[n].clock.now(), lab.agents[n]._keep_deadline()
        )
        for n in nodes
    )


async def test_a_formed_cluster_keeps_running_through_an_etcd_outage(tmp_path: Path) -> None:
    async with running_lab(tmp_path) as lab:
        await until(lambda: lab.up() == set(NODES) and all_joined(lab), 30, "formed, joined")
        assert len(lab.cluster.bootstraps) == 1
        await until(lambda: any(lab.world.values()), 10, "the active-passive service runs")
        stops_before = {n: s.calls.count("stop") for n, s in lab.servers.items()}
        for member in lab.etcd.members:
            member.kill()
        await until(lambda: not any(lab.world.values()), 10, "ap self-fenced (rule 1)")
        await until(lambda: past_keep_deadline(lab, NODES), 10, "every keep deadline passed")
        await asyncio.sleep(0.5)  # a self-fence turn after the deadline (none may stop galera)
        assert lab.up() == set(NODES) and lab.cluster.primary == set(NODES)
        await lab.etcd.start()
        await until(lambda: any(lab.world.values()), 30, "ap started again after etcd")
        await until(lambda: all(a.lease for a in lab.agents.values()), 30, "all registered")
        assert lab.up() == set(NODES) and len(lab.cluster.bootstraps) == 1
        assert {n: s.calls.count("stop") for n, s in lab.servers.items()} == stops_before


async def test_a_bootstrap_under_way_is_stopped_and_its_joiner_kept(tmp_path: Path) -> None:
    async with running_lab(tmp_path, ("db1", "db2")) as lab:
        a1, a2 = lab.agents["db1"], lab.agents["db2"]
        store = lab.etcd.store()
        try:  # the test holds the controller key: it writes the claim and the assignments
            lease = (await store.grant(3600)).id
            await store.put(KEYS.controller, b"test", lease=lease)
            await until(lambda: a1.registration and a2.registration, 10, "registered")
            claim = BootstrapClaim("db1", a1.registration or 0, UUID, 5, force=True)
            await store.put(KEYS.galera_bootstrap("galera"), claim.dump(), lease=a1.lease or 0)
            await store.put(KEYS.assign("galera"), assignment({"db1": a1, "db2": a2}))
            await until(lambda: lab.up() == {"db1", "db2"}, 20, "db1 bootstrapped, db2 joined")
            await until(lambda: "galera" in a2.core.joined, 10, "db2 joined (rule 1g)")
            assert "galera" not in a1.core.joined and lab.cluster.bootstraps == ["db1"]
            for member in lab.etcd.members:
                member.kill()
            await until(lambda: not lab.servers["db1"].up, 10, "the bootstrap node stopped")
            await until(lambda: past_keep_deadline(lab, ("db2",)), 10, "db2's deadline passed")
            await asyncio.sleep(0.5)
            assert lab.servers["db2"].up and "stop" not in lab.servers["db2"].calls[-1:]
        finally:
            await store.close()


def assignment(agents: dict[str, Agent]) -> bytes:
    """Both promoted, for their current registrations (db2 joins once db1 is Primary)."""
    instances = [
        {"node": n, "role": "promoted", "item": None, "reg": a.registration}
        for n, a in agents.items()
    ]
    return json.dumps({"instances": instances}).encode()
