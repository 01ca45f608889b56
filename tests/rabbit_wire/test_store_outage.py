"""Rule 1g for RabbitMQ end to end: real agents (in one process) on a real etcd, their
members over in-memory brokers, and etcd killed.

A cluster the wired controller formed (one node first, the others joined) keeps all three
brokers serving through an outage longer than the keep deadline, while an active-passive
service is self-fenced (rule 1); once etcd is back no broker was stopped or started again.
The brokers are twins (a shared membership, a check that answers while the broker runs):
what is under test is the agents' rule, not RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.agent.node import Agent
from corral.core.rabbit import BrokerState, NodeReport
from corral.drivers.base import NodeContext
from corral.drivers.rabbitmq_health import AmqpResult
from corral.drivers.rabbitmq_member import SERVING, RabbitLink, RabbitMember
from corral.spec import Resource, Spec
from corral.store.lab import EtcdLab, etcd_lab
from tests.agent.fakes import agents_running, until
from tests.galera_wire.fakes import agents_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]
NODES = ("db1", "db2", "db3")


class Broker:
    """One node's broker: ``members`` is the cluster's membership, shared by the twins."""

    def __init__(self, node: str, members: set[str], base: Path) -> None:
        self.node, self.members, self.base = node, members, base
        self.up, self.ident, self.calls = False, "", list[str]()
        self.state: BrokerState | None = None
        self.since = 0.0

    @property
    def alive(self) -> bool:
        return self.up

    def identity(self) -> str:
        return self.ident

    def report(self, state: BrokerState, running: frozenset[str] = frozenset()) -> NodeReport:
        if state != self.state:
            self.state, self.since = state, time.time()
        known = frozenset(self.members) if self.ident else frozenset()
        return NodeReport(self.node, state, self.ident, known, running, self.since)

    async def prepare(self) -> None:
        pass

    def _boot(self, what: str) -> None:
        self.calls.append(what)
        self.up = True
        self.ident = self.ident or uuid.uuid4().hex
        self.members.add(self.node)

    async def start(self) -> None:
        self._boot("start")

    async def join(self, peer: str, *, reset: bool = False) -> None:
        self._boot(f"join {peer}")

    async def force_boot(self, outage: int) -> bool:
        self._boot(f"force_boot {outage}")
        return True

    async def stop(self, timeout: float = 30.0) -> None:
        self.calls.append("stop")
        self.up = False

    async def forget(self, node: str) -> None:
        self.members.discard(node)

    async def grow(self) -> None:
        pass


@dataclass
class Check:
    broker: Broker

    async def check(self) -> AmqpResult:
        return AmqpResult(self.broker.up, "ok" if self.broker.up else "AMQP: refused", 0.0)

    async def close(self) -> None:
        pass


@dataclass
class Lab:
    etcd: EtcdLab
    brokers: dict[str, Broker]
    world: dict[str, bool] = field(default_factory=dict)  # the active-passive service
    agents: dict[str, Agent] = field(default_factory=dict)

    def member(
        self, name: str, res: Resource, ctx: NodeContext, spec: Spec, link: RabbitLink | None
    ) -> RabbitMember:
        broker = self.brokers[ctx.name]
        return RabbitMember(name, ctx.name, broker, Check(broker), link)

    def serving(self) -> set[str]:
        return {n for n, b in self.brokers.items() if b.up}


@contextlib.asynccontextmanager
async def running_lab(tmp_path: Path) -> AsyncIterator[Lab]:
    cookie = tmp_path / "cookie"
    cookie.write_text("COOKIE\n")
    cookie.chmod(0o600)
    spec = agents_spec("rabbit-outage", "local", "127.0.0", (
        f"  mq: {{rabbitmq: {{erlang_cookie: {{file: {cookie}}}}}}}\n"
        "  ap: {process: /bin/true, mode: active-passive}\n"
    ))  # fmt: skip
    members: set[str] = set()
    async with etcd_lab(tmp_path / "etcd", 1, profile="local") as etcd:
        lab = Lab(etcd, {n: Broker(n, members, tmp_path / f"mq-{n}") for n in NODES})

        def fit(agent: Agent) -> None:
            agent.act.rabbit_member = lab.member

        async with agents_running(etcd, spec, NODES, tmp_path, lab.world, fit) as agents:
            lab.agents = agents
            yield lab


def polled(lab: Lab) -> bool:
    """Every agent's actuator has seen its broker serving (a status poll since)."""
    found = [a.act.services.get("mq") for a in lab.agents.values()]
    return all(svc is not None and svc.detail == SERVING for svc in found)


def past_keep_deadline(lab: Lab) -> bool:
    return all(
        not a.core.lease.may_keep(a.clock.now(), a._keep_deadline()) for a in lab.agents.values()
    )


async def test_a_formed_cluster_keeps_serving_through_an_etcd_outage(tmp_path: Path) -> None:
    async with running_lab(tmp_path) as lab:
        await until(lambda: lab.serving() == set(NODES) and polled(lab), 30, "formed, serving")
        firsts = [n for n, b in lab.brokers.items() if b.calls[:1] == ["start"]]
        assert len(firsts) == 1, {n: b.calls for n, b in lab.brokers.items()}  # one formed it
        await until(lambda: any(lab.world.values()), 10, "the active-passive service runs")
        calls_before = {n: list(b.calls) for n, b in lab.brokers.items()}
        for member in lab.etcd.members:
            member.kill()
        await until(lambda: not any(lab.world.values()), 10, "ap self-fenced (rule 1)")
        await until(lambda: past_keep_deadline(lab), 10, "every keep deadline passed")
        await asyncio.sleep(0.5)  # a self-fence turn after the deadline (none may stop a broker)
        assert lab.serving() == set(NODES)
        assert all("mq" in a.core.joined for a in lab.agents.values())
        await lab.etcd.start()
        await until(lambda: any(lab.world.values()), 30, "ap started again after etcd")
        await until(lambda: all(a.lease for a in lab.agents.values()), 30, "all registered")
        assert lab.serving() == set(NODES)
        assert {n: b.calls for n, b in lab.brokers.items()} == calls_before  # nothing restarted
