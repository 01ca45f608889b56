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

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.galera import lab as galera_lab_module
from tests.galera.lab import galera_lab
from tests.galera_wire.model import Agents

import _galera_cases as cases
from _galera_lb import PASSWORD, USER, Balancer, setup_lb, teardown_lb
from _rabbit import bench_main
from corral.agent.controller import Controller
from corral.core.galera.evs import evs_timeouts, provider_options
from corral.spec.profiles import profile_timing

ROUNDS = 12  # controller steps + agent rounds, at most, per recovery (bounded)
LAB_OPTIONS = {"gcache.size": "16M", "pc.recovery": "TRUE"}
if "CORRAL_BENCH_JOIN_RETRANS" in os.environ:  # an A/B of the derived value (e.g. PT1S)
    LAB_OPTIONS["evs.join_retrans_period"] = os.environ["CORRAL_BENCH_JOIN_RETRANS"]
SUBNET = "198.18.74"
RATE = 100.0  # client writes a second
WAIT = 10.0  # bootstrap_wait of the spec (the one-node-gone case)
SPEC = f"""\
cluster: c1
profile: lan
nodes:
  db1: {{address: {SUBNET}.1, roles: [db]}}
  db2: {{address: {SUBNET}.2, roles: [db]}}
  db3: {{address: {SUBNET}.3, roles: [db]}}
  lb1: {{address: {SUBNET}.10, roles: [lb], kind: remote}}
resources:
  galera:
    galera: {{bootstrap_wait: {WAIT:g}s}}
    on: {{role: db}}
    balance: {{port: 3306, via: dbvip, mode: tcp}}
  dbvip: {{vip: {SUBNET}.100/24, on: {{role: lb}}}}
  lb: {{haproxy: {{}}, on: {{role: lb}}}}
"""


async def formation(
    bench_tmp: Path, lab: galera_lab_module.GaleraLab, figures: dict[str, float]
) -> tuple[Agents, Controller]:
    agents = Agents(lab, SPEC)
    await agents.register()
    controller = Controller(
        agents.store, agents.keys, "db1", lambda: agents.spec, wall=time.time, clock=agents.clock
    )
    lease = (await agents.store.grant(3600)).id  # the controller's own: it outlives db1..3
    if not await controller.campaign(lease):
        raise RuntimeError("the controller did not take its key")
    began = time.monotonic()
    await agents.settle(controller, ROUNDS)
    figures["formation_s"] = time.monotonic() - began
    figures["formation_load"] = cases.load_average()
    server = lab.server(1)
    await server.execute("CREATE DATABASE bench")
    await server.execute("CREATE TABLE bench.w (id INT PRIMARY KEY)")
    await server.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
    await server.execute(f"GRANT ALL ON bench.* TO '{USER}'@'%'")
    return agents, controller


def own_names() -> None:
    m = galera_lab_module
    m.SWITCH, m.BRIDGE, m.PREFIX, m.SUBNET = "cgb-sw", "cgb-br", "cgb-", SUBNET
    timing = profile_timing("lan")  # the evs.* timeouts corral derives, as a member gets them
    m.PROVIDER_OPTIONS = provider_options(timing, LAB_OPTIONS)


async def run(quick: bool = False) -> dict[str, float]:
    own_names()
    timing = profile_timing("lan")
    figures: dict[str, float] = {"evs_suspect_timeout_s": evs_timeouts(timing).suspect_timeout}
    runs = 1 if quick else 3
    keep = os.environ.get("CORRAL_BENCH_KEEP")  # a directory to keep the logs in
    with contextlib.ExitStack() as stack:
        if keep:
            tmp = Path(keep)
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-stateful-")))
        teardown_lb()
        try:
            async with galera_lab(tmp, start_timeout=240) as lab:
                vip = setup_lb(galera_lab_module.SWITCH, galera_lab_module.BRIDGE, SUBNET)
                agents, controller = await formation(tmp, lab, figures)
                balancer = Balancer(tmp, agents.spec, agents.store, agents.keys)
                await balancer.start()
                try:
                    bench = cases.Bench(lab, agents, controller, balancer, vip, RATE)
                    await cases.all_cases(bench, figures, runs)
                finally:
                    await balancer.stop()
        finally:
            teardown_lb()
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
