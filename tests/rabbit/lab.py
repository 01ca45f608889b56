"""A three-node RabbitMQ lab in network namespaces (198.18.70.0/24), for the real-server tests.

``PREFIX``, ``SWITCH`` and ``SUBNET`` are module settings: a user that may run beside another
lab (the wired test, the bench) sets its own before :func:`rabbit_lab`.

```
  crb-a 198.18.70.1      crb-b 198.18.70.2      crb-c 198.18.70.3
        \\                      |                      /
         crb-ap ──────────── crb-br ──────────── crb-cp        (namespace crb-sw)
```

Each node namespace has ``/etc/netns/<ns>/hosts`` naming every node, its own epmd and broker
(:class:`corral.drivers.rabbitmq.RabbitServer`). :func:`rabbit_lab` tears everything down in
``finally`` (brokers and epmds by pid, then any process left in the lab's own namespaces,
the namespaces, the hosts files), also after a failed test, and first removes what a killed
earlier run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

from corral.core.rabbit import (
    Cluster,
    Decision,
    ForceBootClaim,
    NodeReport,
    Plan,
    Policy,
    RunRecord,
    decide,
)
from corral.drivers.rabbitmq import (
    BrokerConfig,
    RabbitServer,
    remove_netns_hosts,
    write_netns_hosts,
)
from corral.drivers.rabbitmq_health import AmqpCheck, amqp_connect
from corral.lab import netns
from corral.spec.secrets import SecretRef

PREFIX = "crb-"
SWITCH = "crb-sw"
BRIDGE = "crb-br"
SUBNET = "198.18.70"  # a /24
NODES = ("a", "b", "c")
USER = "corral"


def address(node: str) -> str:
    return f"{SUBNET}.{NODES.index(node) + 1}"


def _namespaces() -> list[str]:
    return [SWITCH, *(PREFIX + n for n in NODES)]


def teardown_namespaces() -> None:
    """Kill every process left in the lab's namespaces (ours: the lab made them), then
    delete them and their hosts files."""
    netns.remove_all(_namespaces())
    for ns in _namespaces():
        remove_netns_hosts(ns)


def setup_namespaces() -> None:
    netns.add_star(SWITCH, BRIDGE, {
        PREFIX + n: (f"crb-{n}p", "eth0", f"{address(n)}/24") for n in NODES
    })  # fmt: skip
    for node in NODES:
        write_netns_hosts(PREFIX + node, {n: address(n) for n in NODES})


@dataclass
class RabbitLab:
    servers: dict[str, RabbitServer]
    password: str
    records: dict[str, RunRecord] = field(default_factory=dict)
    seq: int = 0
    regrow: set[str] = field(default_factory=set)
    claims: dict[int, ForceBootClaim] = field(default_factory=dict)

    def check(self, node: str, timeout: float = 2.0) -> AmqpCheck:
        return AmqpCheck(
            address(node), user=USER, password=self.password, timeout=timeout, netns=PREFIX + node
        )

    async def connect(self, node: str) -> aio_pika.abc.AbstractConnection:
        """A client connection to ``node`` from inside its namespace (nothing leaves the lab)."""
        return await amqp_connect(address(node), 5672, USER, self.password, 5.0, PREFIX + node)

    async def states(self) -> dict[str, str]:
        """Each node's broker state from one AMQP check (no CLI)."""
        out = {}
        for node, server in self.servers.items():
            if not server.alive:
                out[node] = "stopped"
                continue
            probe = self.check(node, timeout=1.0)
            try:
                ok = (await probe.check()).ok
            finally:
                await probe.close()
            out[node] = "running" if ok else "starting"
        return out

    async def reports(self) -> dict[str, NodeReport]:
        states = await self.states()
        running = frozenset(n for n, s in states.items() if s == "running")
        return {
            n: self.servers[n].report(s, running if s == "running" else frozenset())  # type: ignore[arg-type]
            for n, s in states.items()
        }

    def note_running(self, reports: dict[str, NodeReport]) -> None:
        """What each running node's agent writes (``running/<node>``): the nodes it sees
        running, when that set changed; ``seq`` stands in for the store revision."""
        running = frozenset(n for n, r in reports.items() if r.state == "running")
        for node in running:
            old = self.records.get(node)
            if old is None or old.running != running:
                self.seq += 1
                identity = self.servers[node].identity()
                self.records[node] = RunRecord(node, identity, running, self.seq, time.time())

    async def act(self, decision: Decision, outage: int | None = None) -> None:
        """Carry out one decision on its node (what the agent's reconcile would do)."""
        server = self.servers[decision.node]
        if decision.action in ("start_first", "start"):
            await server.start()
        elif decision.action == "join":
            assert decision.peer is not None
            await server.join(decision.peer, reset=decision.reset)
            if decision.regrow:
                self.regrow.add(decision.node)  # once it runs
        elif decision.action == "forget":
            assert decision.peer is not None
            await server.forget(decision.peer)
        elif decision.action == "force_boot":
            assert outage is not None
            await server.force_boot(outage)

    async def converge(
        self,
        timeout: float,
        present: frozenset[str] = frozenset(NODES),
        gone: Mapping[str, str] | None = None,
        policy: Policy | None = None,
    ) -> list[tuple[float, Plan]]:
        """Decide and act until every node of ``present`` (the nodes whose agents report)
        runs; the plans that changed something, with the time they were made (seconds from
        the start). AssertionError after ``timeout``."""
        began = time.monotonic()
        history: list[tuple[float, Plan]] = []
        acted: set[tuple[str, str]] = set()
        while True:
            reports = {n: r for n, r in (await self.reports()).items() if n in present}
            self.note_running(reports)
            for node in sorted(self.regrow):
                if reports[node].state == "running":
                    self.regrow.discard(node)
                    await self.servers[node].grow()
            if all(r.state == "running" for r in reports.values()):
                return history
            last = max((r.seq for r in self.records.values()), default=0)
            cluster = Cluster(
                NODES, reports, dict(self.records), dict(gone or {}), claim=self.claims.get(last)
            )
            plan = decide(cluster, time.time(), policy or Policy())
            if plan.claim is not None:  # the claim's txn: compare absent
                assert plan.claim.outage not in self.claims, plan
                self.claims[plan.claim.outage] = plan.claim
            todo = [
                d for d in plan.decisions.values()
                if d.action not in ("wait", "run") and (d.node, d.action) not in acted
            ]  # fmt: skip
            if todo:
                history.append((time.monotonic() - began, plan))
            for decision in todo:
                acted.add((decision.node, decision.action))
                await self.act(decision, plan.outage)
            assert time.monotonic() - began < timeout, (
                f"not converged in {timeout}s: {reports}; last plan {plan}"
            )
            await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def rabbit_lab(base: Path, net_ticktime: int = 10) -> AsyncIterator[RabbitLab]:
    """The lab under ``base``; ``net_ticktime``: the brokers' (10 s: the test's; the bench
    passes the timing profile's, :func:`corral.drivers.rabbitmq.net_ticktime`)."""
    teardown_namespaces()
    cookie = base / "cookie"
    fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16).upper())
    pw_file = base / "password"
    password = secrets.token_hex(8)
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    servers: dict[str, RabbitServer] = {}
    try:
        setup_namespaces()
        for node in NODES:
            config = BrokerConfig(
                node,
                address(node),
                base / node,
                SecretRef(file=str(cookie)),
                net_ticktime=net_ticktime,
                netns=PREFIX + node,
                user=USER,
                password=SecretRef(file=str(pw_file)),
            )
            servers[node] = RabbitServer(config)
            await servers[node].prepare()
        yield RabbitLab(servers, password)
    finally:
        for server in servers.values():
            with contextlib.suppress(Exception):
                await server.close()
        teardown_namespaces()
