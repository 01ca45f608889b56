#!/usr/bin/env python3
"""Galera's failure paths on real MariaDB servers, through a real HAProxy, driven by corral.

Three MariaDB 10.11 Galera servers in network namespaces (the test lab, ``tests/galera/lab.py``,
under names of our own: ``cgb-*``, 198.18.74.0/24), each behind a
:class:`~corral.drivers.galera_member.GaleraMember` as its agent drives it, and a real
:class:`~corral.agent.controller.Controller` on the memory store gating the promotions and
naming the writer (``tests/galera_wire/model.py``'s ``Agents``; the controller holds a lease of
its own, so losing a database node never loses the controller: see "Limits"). A fourth
namespace (``cgb-lb``, ``bench/_galera_lb.py``) runs a real HAProxy whose configuration corral
renders (``corral.lb.config`` through the HAProxy driver) and whose server states follow the
writer record as every LB agent applies them (``LbDuty``: only the writer ``ready``), and a
client writing one row at a time through the VIP at 100 writes a second. An acknowledged
write is one whose INSERT returned; ``*_lost`` counts those missing afterwards. A power-off
is the node's link down, then every process of its namespace killed (no FIN, no RST).

- ``formation_s``: from empty data dirs to three members synced (one bootstrap, two SSTs).
- **writer power-off** (``writer_off_*``, today's agent as ``writer_off_poll_*``): the
  writer's node powered off; it is fenced ``FENCE_AFTER_S`` (0.75 s) later, a modelled
  figure: gossip's detection plus the lab's fence device, as ``bench/failover.py`` measured
  them (README); then the controller's step moves the writer record, the LB applies it, and the
  survivors evict the fenced member (rule 2, ``evs.evict``) at their next driver poll
  (``_poll``: polls every second at random phases, the agent before this change) or at once
  (the agent's watch saw ``fenced/<node>``: ``WatchFeed.take_fenced``). The timeline:
  ``_fenced_s``, ``_writer_moved_s``, ``_haproxy_switched_s``, ``_evict_sent_s``,
  ``_view_changed_s`` (a survivor's view is two and it is synced), and
  ``_recover_s``: the longest time without an acknowledged write (writes failing). Target
  (issue 16): under 2 s, 0 lost. The node is then powered on: ``node_back_*`` (its agent
  registers again and restarts its member; ``_ist`` 1 when the joiner's log shows IST,
  ``_full_sst`` 1 when it shows a full SST).
- **partition** (``partition_*``): the writer's node cut from its peers and the LB (its switch
  port), no fence device: its lease ends ``lease_ttl`` + 0.25 s later (modelled: etcd's
  expiry check runs every 0.5 s), the writer moves; ``_minority_accepted``: writes straight
  to the cut node's socket that committed (0 expected: non-Primary); ``_left_pool`` 1 when
  HAProxy holds it in maint; after the heal, ``_rejoin_recover_s`` to a view of three.
- **all nodes powered off, back in another order** (``full_reorder_*``): back in reverse
  spec order, 2 s apart; ``_recover_s`` from the last node's return to the first write
  acknowledged through HAProxy (target: under 30 s), ``_synced_s`` to all three synced.
- **one node never comes back** (``one_gone_*``): all powered off, db1 fenced and never
  back; the controller waits ``bootstrap_wait`` (``_wait_s``, 10 s here) then bootstraps from
  the majority; ``_recover_s`` from the last return (target: 30 s plus the wait).

``*_load`` is the 1-minute load average when the case ran (2 cores; other helpers' labs ran
at the same time). Beside the figures, what Pacemaker's ``ocf:heartbeat:galera`` with the
OpenStack HA guide's HAProxy does, cited from their code and docs, **not measured**.

Limits: the detection and fence (0.75 s) and the lease expiry are modelled, not run (no
gossip, no etcd here); the writer's node never holds the controller key here (with it, a
survivor must first take the controller over: ``replace_dead`` fences, then a campaign); one
LB, one client connection.

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
# an A/B of corral's derived values: "evs.join_retrans_period=PT1S;gmcast.peer_timeout=PT1S"
for _entry in filter(None, os.environ.get("CORRAL_BENCH_PROVIDER", "").split(";")):
    _name, _, _value = _entry.partition("=")
    LAB_OPTIONS[_name.strip()] = _value.strip()
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
    if "CORRAL_BENCH_NICE" in os.environ:  # e.g. -10: the servers as on a host of their own
        os.nice(int(os.environ["CORRAL_BENCH_NICE"]))  # the children (mariadbd...) inherit it
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


GA = "heartbeat/galera.in"  # ClusterLabs resource-agents
GUIDE = "OpenStack HA guide, controller-ha-haproxy.rst"


def cited(figures: dict[str, float]) -> list[tuple[str, str]]:
    """Target ratios, and what Pacemaker's galera agent does in each case (cited)."""

    def ratio(name: str, target: float) -> str:
        got = figures.get(name)
        return "not measured (failed)" if got is None else f"{got / target:.2f} x the target"

    wait = figures.get("one_gone_wait_s", WAIT)
    return [
        ("writer_off_recover_s / 2 s", ratio("writer_off_recover_s", 2.0)),
        ("full_reorder_recover_s / 30 s", ratio("full_reorder_recover_s", 30.0)),
        (f"one_gone_recover_s / (30 s + {wait:g} s)", ratio("one_gone_recover_s", 30.0 + wait)),
        (
            "RA, writer lost (cited, not measured)",
            f"HAProxy takes the writer out after fall 5 x inter 2 s = 10 s ({GUIDE}), each "
            "HAProxy alone (backup servers); survivors stall evs.suspect_timeout 5 s (default)",
        ),
        ("RA, node back (cited)", f"Galera IST as here; Promoted monitor every 10 s ({GA})"),
        (
            "RA, full power loss (cited)",
            f"promotes only once every node reported its position ({GA} README)",
        ),
        (
            "RA, one node gone (cited)",
            "waits for every node of wsrep_cluster_address: manual bootstrap "
            "(resource-agents issues 915, 1009)",
        ),
        (
            "RA, one-node partition (cited)",
            "minority non-Primary (Galera); out of HAProxy after 10 s of failed checks",
        ),
    ]


def main() -> int:
    return bench_main(__doc__ or "", "Galera on real servers (corral's decisions)", run, cited)


if __name__ == "__main__":
    raise SystemExit(main())
