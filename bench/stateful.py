#!/usr/bin/env python3
"""Galera's recovery paths on real MariaDB servers, driven by corral's decisions.

Three MariaDB 10.11 Galera servers in network namespaces (the test lab, ``tests/galera/lab.py``,
with its own names), each behind a :class:`~corral.drivers.galera_member.GaleraMember` as its
agent drives it, and a real :class:`~corral.agent.controller.Controller` on the memory store
gating the promotions and naming the writer (``tests/galera_wire/test_real_formation.py``'s
``Agents``: a round = read the assignment, start/promote, publish the role). A client writes
one row at a time to the node the writer record names (what every HAProxy sends writes to),
about 50 a second; a write that returned is *acknowledged*.

- ``formation_s``: from nothing (empty data dirs) to three members synced, by the
  controller's decisions (one bootstrap under the claim, two joiners by mariabackup SST).
- **writer crash**: the writer's mariadbd killed -9 (the node stays up: no fence, so no
  ``evs.evict``; the survivors wait for Galera's suspicion, ``evs.suspect_timeout``, which
  corral derives from the timing profile: ``evs_suspect_timeout_s``, the lan profile; Galera's
  default is 5 s). The writer's agent sees it at its
  next poll (modelled: every second) and reports it; the next controller step moves the
  writer record. ``writer_moved_s``: kill -> record moved; ``writer_writes_failing_s``: the
  longest time between two acknowledged writes around it; ``writer_crash_lost``: acknowledged
  writes missing afterwards. The dead member is then started again (IST).
- **full crash**: all three mariadbds killed -9 at once under the write load, then started
  again by the decisions: each member inspects its state (``--wsrep-recover``: seqno -1 after
  a crash) and reports, the controller claims the bootstrap for the most advanced node, it
  starts with ``--wsrep-new-cluster`` from its recovered position, the others join once the
  claim is cleared. ``full_crash_recover_s``: from the restart to the first write accepted
  through the writer; ``full_crash_synced_s``: to all three synced; ``wsrep_recover_s``: the
  slowest node's inspection (the ``--wsrep-recover`` run; the three run one after the other
  here, at once on real agents, so the recovery figures hold two inspections more than a real
  cluster's); ``full_crash_lost``: acknowledged writes missing afterwards.

Beside them, what Pacemaker's ``ocf:heartbeat:galera`` does, cited from its code and issues,
**not measured** (no Pacemaker here): after an unclean full stop every node says ``seqno: -1``;
the agent runs ``mysqld --wsrep-recover`` on each node, and promotes the most advanced node
only once *every* node has reported its position (a node that never returns keeps the cluster
down until a person bootstraps by hand: resource-agents issues 915, 1009; before PR 1547 the
all ``-1`` case itself stayed down). Its steps when every node returns are the ones measured
here (recover, bootstrap, joins), so its time is bounded below by ``wsrep_recover_s`` plus a
bootstrap and the joins; the difference is the node that does not come back.

Usage: bench/stateful.py [--quick] [--json FILE]   (root; make server-packages)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.galera import lab as galera_lab_module
from tests.galera.lab import GaleraLab, galera_lab, kill9
from tests.galera_wire.model import NODES, Agents

from _rabbit import bench_main
from corral.agent.controller import Controller
from corral.core.galera.evs import evs_timeouts, provider_options
from corral.drivers.galera import GaleraServer
from corral.records import StatusInstance, StatusRecord
from corral.records.galera import read_galera
from corral.spec.profiles import profile_timing

ROUNDS = 12  # controller steps + agent rounds, at most, per recovery (bounded)
LAB_OPTIONS = {"gcache.size": "16M", "pc.recovery": "TRUE"}


class Client:
    """Writes rows ``i = 1, 2, ...`` to the writer the store names, one connection per node
    (timeouts 2 s: a stalled commit counts as failing, never hangs the bench)."""

    def __init__(self, lab: GaleraLab, agents: Agents) -> None:
        self.lab, self.agents = lab, agents
        self.acked: list[tuple[int, float]] = []
        self.next = 1
        self.stop = asyncio.Event()
        self._conns: dict[str, Any] = {}

    async def writer(self) -> str | None:
        kvs = (await self.agents.store.range(self.agents.keys.galera("galera"))).kvs
        got = read_galera(self.agents.keys, "galera", kvs).writer
        return got[0].node if got else None

    def _insert(self, node: str, i: int) -> None:
        conn = self._conns.get(node)
        if conn is None:
            sock = str(self.lab.server(NODES.index(node) + 1).settings.socket)
            conn = pymysql.connect(
                unix_socket=sock, user="root", autocommit=True,
                connect_timeout=2, read_timeout=2, write_timeout=2,
            )  # fmt: skip
            self._conns[node] = conn
        try:
            conn.cursor().execute("INSERT INTO bench.w VALUES (%s)", (i,))
        except Exception:
            self._conns.pop(node, None)
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def run(self, limit: float = 600.0) -> None:
        began = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - began < limit:
            node = await self.writer()
            if node is not None:
                i = self.next
                self.next += 1
                try:
                    await asyncio.to_thread(self._insert, node, i)
                    self.acked.append((i, time.monotonic()))
                except Exception:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.02)

    def longest_gap(self, since: float) -> float:
        times = [since] + [t for _, t in self.acked if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def wait_acked(self, count: int, load: asyncio.Task[None], limit: float = 120) -> None:
        """Until ``count`` writes were acknowledged (bounded; the load must still run)."""
        deadline = time.monotonic() + limit
        while len(self.acked) < count:
            if load.done() or time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.acked)} writes acknowledged of {count}")
            await asyncio.sleep(0.05)


async def rows(server: GaleraServer) -> set[int]:
    await server.execute("SET SESSION wsrep_sync_wait = 1")
    return {int(r[0]) for r in await server.execute("SELECT id FROM bench.w")}


async def formation(lab: GaleraLab, figures: dict[str, float]) -> tuple[Agents, Controller]:
    agents = Agents(lab)
    await agents.register()
    controller = Controller(
        agents.store, agents.keys, "db1", lambda: agents.spec, wall=time.time, clock=agents.clock
    )
    if not await controller.campaign(agents.leases["db1"]):
        raise RuntimeError("the controller did not take its key")
    began = time.monotonic()
    await agents.settle(controller, ROUNDS)
    figures["formation_s"] = time.monotonic() - began
    await lab.server(1).execute("CREATE DATABASE bench")
    await lab.server(1).execute("CREATE TABLE bench.w (id INT PRIMARY KEY)")
    return agents, controller


async def under_load(lab: GaleraLab, agents: Agents) -> tuple[Client, asyncio.Task[None]]:
    """A client writing, once 50 writes were acknowledged."""
    client = Client(lab, agents)
    load = asyncio.create_task(client.run())
    await client.wait_acked(50, load)
    return client, load


async def writer_crash(
    lab: GaleraLab, agents: Agents, controller: Controller, figures: dict[str, float]
) -> None:
    client, load = await under_load(lab, agents)
    old = await client.writer()
    if old is None:
        raise RuntimeError("no writer named")
    killed = time.monotonic()
    await kill9(lab.server(NODES.index(old) + 1))
    moved = None
    for _ in range(60):  # the agent's poll, every second: it reports the dead member
        await asyncio.sleep(1.0)
        status = await agents.members[old].status()
        if status.state != "running":
            record = StatusRecord((StatusInstance("promoted", "unhealthy", status.detail),))
            key = agents.keys.status(old, "galera")
            await agents.store.put(key, record.dump(), lease=agents.leases[old])
            await controller.step()
        if await client.writer() != old:
            moved = time.monotonic() - killed
            break
    if moved is None:
        raise RuntimeError("the writer record never moved")
    figures["writer_moved_s"] = moved
    await client.wait_acked(len(client.acked) + 50, load)  # through the new writer
    client.stop.set()
    await load
    figures["writer_writes_failing_s"] = client.longest_gap(killed - 1.0)
    survivor = lab.server(NODES.index(await client.writer() or "db1") + 1)
    figures["writer_crash_lost"] = float(len({i for i, _ in client.acked} - await rows(survivor)))
    # the dead member back, as its agent would: start (stopped, reported), promote (joins)
    await agents.restart(old)
    await agents.settle(controller, ROUNDS)


async def full_crash(
    lab: GaleraLab, agents: Agents, controller: Controller, figures: dict[str, float]
) -> None:
    client, load = await under_load(lab, agents)
    await asyncio.gather(*(kill9(s) for s in lab.servers))  # a power cut of every node
    client.stop.set()
    await load
    acked = {i for i, _ in client.acked}
    began = time.monotonic()
    slowest = max([await agents.restart(node) for node in NODES])  # each agent: its member
    figures["wsrep_recover_s"] = slowest
    writable = asyncio.create_task(first_write(lab, agents, began))
    await agents.settle(controller, ROUNDS)
    figures["full_crash_synced_s"] = time.monotonic() - began
    figures["full_crash_recover_s"] = await asyncio.wait_for(writable, 120)
    missing = acked - await rows(lab.server(1))
    figures["full_crash_lost"] = float(len(missing))


async def first_write(lab: GaleraLab, agents: Agents, began: float) -> float:
    """Seconds from ``began`` to the first write accepted through the writer record's node."""
    probe = Client(lab, agents)
    probe.next = 10_000_000
    while True:
        node = await probe.writer()
        if node is not None and agents.roles.get(node) == "promoted":
            try:
                await asyncio.to_thread(probe._insert, node, probe.next)
                return time.monotonic() - began
            except Exception:
                probe.next += 1
        await asyncio.sleep(0.1)


async def run(quick: bool = False) -> dict[str, float]:  # one run either way (minutes each)
    galera_lab_module.SWITCH, galera_lab_module.PREFIX = "cgb-sw", "cgb-"
    galera_lab_module.BRIDGE, galera_lab_module.SUBNET = "cgb-br", "198.18.75"
    timing = profile_timing("lan")  # the evs.* timeouts corral derives, as a member gets them
    galera_lab_module.PROVIDER_OPTIONS = provider_options(timing, LAB_OPTIONS)
    figures: dict[str, float] = {"evs_suspect_timeout_s": evs_timeouts(timing).suspect_timeout}
    with tempfile.TemporaryDirectory(prefix="corral-stateful-") as tmp:
        async with galera_lab(Path(tmp), start_timeout=240) as lab:
            agents, controller = await formation(lab, figures)
            await writer_crash(lab, agents, controller, figures)
            await full_crash(lab, agents, controller, figures)
    return {k: round(v, 3) for k, v in figures.items()}


def cited(figures: dict[str, float]) -> list[tuple[str, str]]:
    return [
        ("resource agent, full crash (cited, not measured)", "waits for every node"),
        ("resource agent, a node gone for good (cited)", "manual bootstrap"),
    ]


def main() -> int:
    return bench_main(__doc__ or "", "Galera on real servers (corral's decisions)", run, cited)


if __name__ == "__main__":
    raise SystemExit(main())
