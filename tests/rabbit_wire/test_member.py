"""The member driver's contract on in-memory twins of the broker and the store link: it
starts a broker only as its decision says, force-boots only under a claim naming it (DESIGN
rule 6 at the node), reports, and carries out a forget once."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.core.rabbit import BrokerState, Decision, ForceBootClaim, NodeReport
from corral.drivers import make_driver
from corral.drivers.base import NodeContext, NodeFault
from corral.drivers.rabbitmq_health import AmqpResult
from corral.drivers.rabbitmq_member import SERVING, RabbitMember
from corral.spec import load_spec_text
from corral.store.errors import StoreUnavailable
from tests.rabbit_wire.test_plan import SPEC


class FakeServer:
    """Keeps the calls; ``alive`` after a start until a stop or ``crash``."""

    def __init__(self, base: Path) -> None:
        self.base, self.up, self.calls = base, False, list[str]()

    @property
    def alive(self) -> bool:
        return self.up

    def identity(self) -> str:
        return "id-a"

    def report(self, state: BrokerState, running: frozenset[str] = frozenset()) -> NodeReport:
        return NodeReport("a", state, "id-a", frozenset({"a", "b"}), running)

    async def prepare(self) -> None:
        self.calls.append("prepare")

    async def start(self) -> None:
        self.calls.append("start")
        self.up = True

    async def join(self, peer: str, *, reset: bool = False) -> None:
        self.calls.append(f"join {peer} reset={reset}")
        self.up = True

    async def stop(self, timeout: float = 30.0) -> None:
        self.up = False

    async def force_boot(self, outage: int) -> bool:
        self.calls.append(f"force_boot {outage}")
        self.up = True
        return True

    async def forget(self, node: str) -> None:
        self.calls.append(f"forget {node}")

    async def grow(self) -> None:
        self.calls.append("grow")


class FakeCheck:
    def __init__(self) -> None:
        self.ok = True

    async def check(self) -> AmqpResult:
        return AmqpResult(self.ok, "ok" if self.ok else "AMQP: refused", 0.0)

    async def close(self) -> None:
        pass


@dataclass
class FakeLink:
    decided: Decision | None = None
    outage: int | None = None
    claims: dict[int, ForceBootClaim] = field(default_factory=dict)
    reports: list[NodeReport] = field(default_factory=list)
    runs: list[frozenset[str]] = field(default_factory=list)
    away: bool = False  # the store does not answer

    async def report(self, report: NodeReport) -> None:
        if self.away:
            raise StoreUnavailable("etcd put: no endpoint answered")
        self.reports.append(report)

    async def running(self, identity: str, running: frozenset[str]) -> None:
        if self.away:
            raise StoreUnavailable("etcd txn: no endpoint answered")
        self.runs.append(running)

    async def decision(self) -> tuple[Decision | None, int | None]:
        return self.decided, self.outage

    async def claim(self, outage: int) -> ForceBootClaim | None:
        return self.claims.get(outage)

    async def running_peers(self) -> frozenset[str]:
        return frozenset({"b"})


def member(tmp_path: Path) -> tuple[RabbitMember, FakeServer, FakeLink, FakeCheck]:
    server, link, check = FakeServer(tmp_path), FakeLink(), FakeCheck()
    return RabbitMember("mq", "a", server, check, link), server, link, check


async def started_first(tmp_path: Path) -> tuple[RabbitMember, FakeServer, FakeLink, FakeCheck]:
    """A member told to start first, promoted (its broker up)."""
    m, server, link, check = member(tmp_path)
    await m.start()
    link.decided = Decision("a", "start_first", "was running last")
    await m.promote()
    return m, server, link, check


async def test_a_wait_or_no_decision_refuses_and_starts_nothing(tmp_path: Path) -> None:
    m, server, link, _ = member(tmp_path)
    await m.start()
    assert link.reports[-1].state == "stopped"
    with pytest.raises(NodeFault, match="no decision"):
        await m.promote()
    link.decided = Decision("a", "wait", "waiting for b, which stopped after it")
    with pytest.raises(NodeFault, match="stopped after it"):
        await m.promote()
    assert "start" not in server.calls and not m.promoted


async def test_force_boot_only_under_this_outages_claim_naming_this_node(tmp_path: Path) -> None:
    m, server, link, _ = member(tmp_path)
    await m.start()
    link.decided, link.outage = Decision("a", "force_boot", "the others are gone"), 7
    with pytest.raises(NodeFault, match="rule 6"):
        await m.promote()  # a plan without its claim: never
    link.claims[7] = ForceBootClaim(7, "b", 1.0, "b was chosen")
    with pytest.raises(NodeFault, match="rule 6"):
        await m.promote()  # the claim names another node
    link.claims[7] = ForceBootClaim(7, "a", 1.0, "a was chosen")
    await m.promote()
    assert server.calls[-1] == "force_boot 7" and m.promoted


async def test_a_broker_booting_when_its_decision_turns_to_force_boot_is_force_booted_once(
    tmp_path: Path,
) -> None:
    """Seen on real brokers: a node of the last-running set started first and waited for a
    fenced peer; when force_boot came due, its promote had happened already, and nothing
    force-booted it until RabbitMQ gave up (10 x 30 s). Its status does it, under the claim."""
    m, server, link, check = await started_first(tmp_path)
    check.ok = False  # waiting for its peers' tables
    link.decided, link.outage = Decision("a", "force_boot", "c is gone"), 7
    await m.status()
    await asyncio.sleep(0)
    assert "force_boot 7" not in server.calls  # no claim naming it: never (rule 6)
    assert server.alive  # and the refused attempt stopped nothing
    link.claims[7] = ForceBootClaim(7, "a", 1.0, "a was chosen")
    for _ in range(3):
        await m.status()
        await asyncio.sleep(0)
    assert server.calls.count("force_boot 7") == 1 and server.alive and m.promoted


async def test_serving_writes_the_run_record_and_forgets_once_then_a_crash_fails(
    tmp_path: Path,
) -> None:
    m, server, link, check = await started_first(tmp_path)
    check.ok = False
    paused = await m.status()
    assert "not serving" in paused.detail and link.reports[-1].state == "starting"
    assert not paused.joined  # booting or paused: held to the lease (rule 1)
    check.ok = True
    link.decided = Decision("a", "forget", "forget c (replaced)", peer="c")
    for _ in range(3):
        status = await m.status()
        await asyncio.sleep(0)
    assert status.detail == SERVING and link.runs[-1] == frozenset({"a", "b"})
    assert status.joined  # serving: kept through a store outage (rule 1g)
    assert server.calls.count("forget c") == 1
    await server.stop()  # kill -9
    assert (await m.status()).state == "failed"
    assert [r.state for r in link.reports][-1] == "stopped"


async def test_with_the_store_away_it_serves_and_stops_and_reports_once_back(
    tmp_path: Path,
) -> None:
    m, server, link, _ = await started_first(tmp_path)
    link.away = True
    status = await m.status()  # the run record cannot be written: still serving, joined
    assert status.detail == SERVING and status.joined
    await m.stop()  # rule 1's stop while the store is away: done, never raised
    assert not server.alive
    link.away = False
    assert (await m.status()).detail == "broker stopped (state reported)"
    assert link.reports[-1].state == "stopped"  # the lost report, sent once the store is back


def test_the_guards_driver_comes_from_the_spec_with_the_profiles_ticktime(tmp_path: Path) -> None:
    spec = load_spec_text(SPEC.replace("force_boot_after: 60s", f"base_dir: {tmp_path}"))
    driver = make_driver("rabbitmq", spec.resources["rabbitmq"], NodeContext("mq1", "198.18.0.21"),
                         spec=spec)  # fmt: skip
    assert isinstance(driver, RabbitMember) and driver.link is None
    config = driver.server.config  # type: ignore[attr-defined]
    assert config.net_ticktime == 12 and config.base == tmp_path / "rabbitmq"  # lan: 4 x 3 s


async def test_a_stale_pid_file_naming_another_process_kills_nothing(tmp_path: Path) -> None:
    """The lease guard's stop by pid file: a pid file left from before a reboot may name an
    unrelated process now (here: this test's own process); it must be left alone."""
    m, _, _, _ = member(tmp_path)
    (tmp_path / "broker.pid").write_text(f"{os.getpid()}\n")
    await m.stop()  # still alive to tell
    assert os.path.exists(f"/proc/{os.getpid()}")


async def test_a_replacement_joins_then_is_grown_into_the_quorum_queues_once(
    tmp_path: Path,
) -> None:
    m, server, link, _ = member(tmp_path)
    await m.start()
    link.decided = Decision("a", "join", "replaces a forgotten member", peer="b", regrow=True)
    await m.promote()
    for _ in range(3):
        await m.status()
        await asyncio.sleep(0)
    assert server.calls.count("join b reset=False") == 1 and server.calls.count("grow") == 1
