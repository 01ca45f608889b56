#!/usr/bin/env python3
"""RabbitMQ's slower recovery paths on real brokers, through corral's wired controller.

Three RabbitMQ 3.10 brokers in network namespaces (the test lab, ``tests/rabbit/lab.py``,
under this bench's own names: ``crb-*``, 198.18.75.0/24; ``net_ticktime`` from the spec's
timing profile), a real etcd (``corral.store.lab.etcd_lab``), corral's
:class:`~corral.agent.controller.Controller` writing the plan (and the force-boot claim) and
gating the promotions, and each node's :class:`~corral.drivers.rabbitmq_member.RabbitMember`
with its store link doing what its assignment and decision say, as its agent does
(``tests/rabbit_wire/agents.py``). Nothing here calls a decision or a broker's CLI itself
(the queue-membership read of the replaced case aside). A quorum queue, publisher-confirmed
messages, then:

- **partition**: c is cut from a and b (an nftables drop on the lab's bridge; the store is
  not cut). ``partition_notice_s``: until c stops serving (``pause_minority``);
  ``partition_rejoin_recover_s``: from the heal until c serves again. Messages confirmed on a
  before and during the cut are read back from c: ``partition_lost``.
- **replaced**: c's broker is killed, its directory wiped (new disks) and its agent comes back
  (a new registration): a running member forgets the old c, the new c joins and is grown back
  into the quorum queue, by the plan. ``replaced_recover_s``: from the new c's agent start
  until it serves; ``replaced_in_queue_recover_s``: until it is a member of the queue again
  (``replaced_in_queue``: 1 when it is); ``replaced_lost``.
- **wrong order**: a, then b, then c go down (agent and broker: a clean stop each;
  ``pause_minority`` pauses c once b is gone), and come back in the wrong order, a's agent
  first, then b's, then c's; a must not start first (checked) and no claim is made (checked).
  ``wrong_order_recover_s``: from c's return until all three serve (target: 30 s);
  ``wrong_order_lost`` (target: 0).
- **last-running node gone**: a stops cleanly, b and c are killed together (the last-running
  set is {b, c}) and c is fenced and never comes back; a comes back. After ``force_boot_after``
  (10 s here) exactly one node force-boots under the claim, the other follows.
  ``last_gone_recover_s`` (from the kill, the wait included), ``last_gone_force_boots`` (1),
  ``last_gone_claims_left`` (0: the spent claim trimmed once the cluster serves),
  ``last_gone_lost``.

Every scenario's figures come with ``<scenario>_load1`` (the 1-minute load average when it
ended). ``--quick``: one run; else three, and the table shows medians. A scenario that fails
is reported (``<scenario>_failed``) and the run goes on. What Pacemaker's ``rabbitmq-cluster``
agent does in each case is cited from its code (not measured) beside each figure.

Usage: bench/rabbit_stateful.py [--quick] [--json FILE]   (root; make server-packages)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.rabbit import lab as lab_module
from tests.rabbit.clients import MESSAGES, declare, drain, publish, registered_everywhere
from tests.rabbit.lab import NODES, rabbit_lab
from tests.rabbit_wire.agents import Agents, durable_everywhere, spec_text

from _rabbit import bench_main
from corral.agent.controller import Controller
from corral.drivers.rabbitmq import net_ticktime
from corral.lab import netns
from corral.records.rabbit import read_state
from corral.spec import load_spec_text
from corral.store.lab import etcd_lab

Figures = dict[str, float]
PREFIX, SWITCH, SUBNET = "crb-", "crb-sw", "198.18.75"
TARGETS = {
    "wrong_order_recover_s": "<= 30 s",
    "wrong_order_lost": "0",
    "replaced_in_queue": "1, no operator step",
    "replaced_lost": "0",
    "partition_lost": "0",
    "last_gone_force_boots": "1 (rule 6)",
    "last_gone_claims_left": "0",
    "last_gone_lost": "0",
}
PACEMAKER = {  # heartbeat/rabbitmq-cluster (ClusterLabs resource-agents): cited, not measured
    "wrong_order_recover_s": "no order: the first node to start with no running peer wipes "
    "its data and boots alone (rmq_start_first), the others wipe, forget and join",
    "wrong_order_lost": "every message: rmq_start_first and rmq_try_start wipe the data "
    "directory of each node (users and policies restored from a stop-time backup only)",
    "replaced_in_queue": "not restored: the agent wipes, forget_cluster_node remotely and "
    "join_cluster; it never grows quorum queues",
    "replaced_lost": "kept by the surviving members (the new node joins empty)",
    "partition_notice_s": "rmq_monitor fails when running_db_nodes is under half the nodes "
    "Pacemaker runs it on (or mnesia is down, as when paused): failed monitor",
    "partition_rejoin_recover_s": "Pacemaker's recovery: stop, then start = wipe, forget, join",
    "partition_lost": "the minority node's copy is wiped at its restart",
    "last_gone_recover_s": "never waits for the last-running node: first starter boots alone",
    "last_gone_force_boots": "no force_boot: a wipe instead, every start",
    "last_gone_lost": "every message (wiped)",
}


def _load() -> float:
    return os.getloadavg()[0]


class Bench:
    """One run's lab, store, controller and agents."""

    def __init__(self, agents: Agents, controller: Controller) -> None:
        self.agents, self.controller = agents, controller
        self.lab = agents.lab

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        await self.agents.until(self.controller, done, timeout, what)

    async def settle(self, seconds: float) -> list[dict[str, str]]:
        """Steps and rounds for ``seconds`` (the agents and the controller at work)."""
        end = time.monotonic() + seconds
        return await self.agents.until(self.controller, lambda: time.monotonic() > end, 60, "")

    async def formed(self) -> None:
        """Formation, and the quorum queue declared and on every node's disk. Each scenario
        then publishes its own messages and reads the queue empty (a read consumes)."""
        await self.agents.converge(self.controller, timeout=180)
        await declare(self.lab, "b")
        await registered_everywhere(self.lab, timeout=30.0)
        await durable_everywhere(self.lab, timeout=30.0)

    async def partition(self) -> Figures:
        confirmed = await publish(self.lab, "a", MESSAGES, tag="p")
        cut = time.monotonic()
        netns.partition_port(SWITCH, f"{PREFIX}cp", [f"{PREFIX}ap", f"{PREFIX}bp"])
        try:
            await self.until(lambda: not self.agents.serving("c"), 90, "c paused")
            notice = time.monotonic() - cut
            assert self.agents.serving("ab"), f"the majority stopped: {self.agents.details}"
            confirmed |= await publish(self.lab, "a", MESSAGES, tag="q")  # during the cut
        finally:
            netns.heal_port(SWITCH, f"{PREFIX}cp")
        healed = time.monotonic()
        await self.until(lambda: self.agents.serving(NODES), 120, "c rejoins")
        rejoin = time.monotonic() - healed
        got = await drain(self.lab, "c", len(confirmed))
        return {
            "partition_notice_s": notice,
            "partition_rejoin_recover_s": rejoin,
            "partition_lost": len(confirmed - got),
        }

    async def replaced(self) -> Figures:
        confirmed = await publish(self.lab, "a", MESSAGES, tag="r")
        await self.agents.down("c")
        server = self.lab.servers["c"]
        await server.kill()
        shutil.rmtree(server.base)  # new disks
        await server.prepare()
        await self.agents.up("c")
        began = time.monotonic()
        await self.agents.converge(self.controller, timeout=180)
        recover = time.monotonic() - began
        in_queue = await self._in_queue("c", timeout=120)
        grown = time.monotonic() - began
        got = await drain(self.lab, "c", len(confirmed))
        return {
            "replaced_recover_s": recover,
            "replaced_in_queue_recover_s": grown,
            "replaced_in_queue": float(in_queue),
            "replaced_lost": len(confirmed - got),
        }

    async def _in_queue(self, node: str, timeout: float) -> bool:
        """Whether ``rabbit@node`` is a member of every quorum queue (by a's CLI: 2-5 s a
        call), with the agents at work meanwhile; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = await self.lab.servers["a"].ctl(
                "rabbitmqctl", "list_queues", "name", "members", "--formatter", "json"
            )
            queues = json.loads(done.stdout or "[]")
            if queues and all(f"rabbit@{node}" in q["members"] for q in queues):
                return True
            await self.settle(2.0)
        return False

    async def wrong_order(self) -> Figures:
        confirmed = await publish(self.lab, "b", MESSAGES, tag="w")
        await self._down("a")
        await self._newest_is("bc", 60)
        await self._down("b")
        await self.until(lambda: not self.agents.serving("c"), 60, "c paused")
        await self._down("c")
        last = await self.agents.last_running()
        for back in "ab":  # the wrong order: a (stopped first) back first, then b
            await self.agents.up(back)
            plans = await self.settle(6.0)
            claims = (await read_state(self.agents.store, self.agents.rkeys)).claims
            assert not claims, f"a claim while a member of {set(last)} may come back: {claims}"
            if "a" not in last:
                assert all(p.get("a", "wait") == "wait" for p in plans), plans
                assert not self.lab.servers["a"].alive, "a started before the last-running set"
        await self.agents.up("c")
        began = time.monotonic()
        await self.agents.converge(self.controller, timeout=180)
        recover = time.monotonic() - began
        got = await drain(self.lab, "a", len(confirmed))
        return {"wrong_order_recover_s": recover, "wrong_order_lost": len(confirmed - got)}

    async def _newest_is(self, nodes: str, timeout: float) -> None:
        """The agents at work until the newest run record names ``nodes``."""
        deadline = time.monotonic() + timeout
        while (got := await self.agents.last_running()) != frozenset(nodes):
            assert time.monotonic() < deadline, f"the newest run record is {set(got)}"
            await self.settle(0.5)

    async def _down(self, node: str) -> None:
        """``node`` powered off cleanly: its agent gone, its broker stopped."""
        await self.agents.down(node)
        await self.lab.servers[node].stop()

    async def last_gone(self) -> Figures:
        confirmed = await publish(self.lab, "b", MESSAGES, tag="l")
        await self._down("a")
        await self._newest_is("bc", 60)
        began = time.monotonic()
        await asyncio.gather(self.lab.servers["b"].kill(), self.lab.servers["c"].kill())
        await self.agents.fence("c")  # never comes back
        await self.agents.up("a")
        seen = await self.agents.converge(self.controller, timeout=180, nodes="ab")
        recover = time.monotonic() - began
        boots = {n for plan in seen for n, action in plan.items() if action == "force_boot"}
        for _ in range(20):  # the controller trims the spent claim at its next steps
            left = (await read_state(self.agents.store, self.agents.rkeys)).claims
            if not left:
                break
            await self.settle(1.0)
        got = await drain(self.lab, "b", len(confirmed))
        return {
            "last_gone_recover_s": recover,
            "last_gone_force_boots": float(len(boots)),
            "last_gone_claims_left": float(len(left)),
            "last_gone_lost": len(confirmed - got),
        }


SCENARIOS = ("partition", "replaced", "wrong_order", "last_gone")


async def _scenario(name: str, work: Awaitable[Figures], into: Figures) -> bool:
    """Run one scenario into ``into`` (its figures and its load); a failure is said and
    counted (``<name>_failed``), and False is returned."""
    began = time.monotonic()
    print(f"{name}: (load {_load():.1f})", flush=True)
    try:
        into.update(await work)
        into[f"{name}_load1"] = _load()
        print(f"{name}: done in {time.monotonic() - began:.0f}s", flush=True)
        return True
    except Exception as exc:  # reported, the run goes on
        print(f"{name} failed: {type(exc).__name__}: {exc}"[:2000], flush=True)
        into[f"{name}_failed"] = 1.0
        into[f"{name}_load1"] = _load()
        return False


async def one_run(base: Path) -> Figures:
    """Formation, then the scenarios in order on one lab; a scenario after a failed one
    runs only once the agents brought all three back."""
    spec = load_spec_text(spec_text(", force_boot_after: 10s"))
    figures: Figures = {}
    (base / "mq").mkdir()
    async with etcd_lab(base / "etcd", 1) as etcd:
        store = etcd.store()
        try:
            async with rabbit_lab(base / "mq", net_ticktime(spec.effective_timing)) as lab:
                agents = Agents(lab, store, spec)
                controller = Controller(store, agents.keys, "bench", lambda: spec)
                assert await controller.campaign((await store.grant(3600)).id)
                await agents.register()
                bench = Bench(agents, controller)
                began = time.monotonic()
                await bench.formed()
                figures["formation_s"] = time.monotonic() - began
                work = {
                    "partition": bench.partition,
                    "replaced": bench.replaced,
                    "wrong_order": bench.wrong_order,
                    "last_gone": bench.last_gone,
                }
                for name in SCENARIOS:
                    if not await _scenario(name, work[name](), figures) and name != "last_gone":
                        await _back(agents, controller)
        except Exception as exc:  # the figures so far are kept
            print(f"run stopped: {type(exc).__name__}: {exc}"[:2000], flush=True)
            figures["run_failed"] = 1.0
        finally:
            await store.close()
    return figures


async def _back(agents: Agents, controller: Controller) -> None:
    """Every agent up again and all three serving (after a failed scenario)."""
    for node in set(NODES) - agents.live:
        await agents.up(node)
    await agents.converge(controller, timeout=300)


def _median(runs: list[Figures]) -> Figures:
    names = sorted({n for run in runs for n in run})
    out = {n: statistics.median(r[n] for r in runs if n in r) for n in names}
    out["runs"] = float(len(runs))
    return out


async def run(quick: bool = False) -> Figures:
    """``quick``: one run, else three; medians of each figure over the runs that have it."""
    saved = (lab_module.PREFIX, lab_module.SWITCH, lab_module.SUBNET)
    lab_module.PREFIX, lab_module.SWITCH, lab_module.SUBNET = PREFIX, SWITCH, SUBNET
    runs: list[Figures] = []
    try:
        for i in range(1 if quick else 3):
            base = Path(tempfile.mkdtemp(prefix="corral-bench-rabbit-"))
            try:
                runs.append(await one_run(base))
                said = ", ".join(f"{k} {v:.1f}" for k, v in sorted(runs[-1].items()))
                print(f"run {i + 1}: {said}", flush=True)
            except Exception as exc:  # a failed run is reported, the next one goes on
                print(f"run {i + 1} failed: {type(exc).__name__}: {exc}"[:2000], flush=True)
            finally:
                shutil.rmtree(base, ignore_errors=True)
    finally:
        lab_module.PREFIX, lab_module.SWITCH, lab_module.SUBNET = saved
    if not runs:
        raise RuntimeError("every run failed")
    return _median(runs)


def main() -> int:
    for noisy in ("aiormq", "aio_pika"):  # the brokers' shutdowns, said in tracebacks
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    title = "RabbitMQ recovery through corral's wired controller on real brokers (medians)"
    columns = {"target": TARGETS, "Pacemaker rabbitmq-cluster (cited)": PACEMAKER}
    return bench_main(__doc__ or "", title, run, columns=columns)


if __name__ == "__main__":
    sys.exit(main())
