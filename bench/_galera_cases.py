"""The cases of ``bench/stateful.py`` (see its docstring for what each measures and why).

Every case runs on one :class:`Bench`: the Galera lab (three real servers), the modelled
agents and a real controller on the memory store (``tests/galera_wire/model.py``), the real
HAProxy in the LB namespace following the writer record (``_galera_lb.Balancer``), and the
client writing through the VIP (``_galera_lb.Load``). Times are ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.galera import lab as galera_lab_module
from tests.galera.lab import GaleraLab, ns_of
from tests.galera_wire.model import NODES, Agents

from _galera_lb import Balancer, Load, polled
from corral.agent.controller import Controller
from corral.drivers.galera import GaleraServer
from corral.lab import netns
from corral.records.galera import read_galera

Figures = dict[str, float]
FENCE_AFTER_S = 0.75  # power-off -> fenced record: gossip + the lab's fence device (README)
ROUNDS = 12  # controller steps + agent rounds at once, per recovery
STATUS_POLL = 1.0  # the agents' driver poll (agent/node.py STATUS_POLL)


def index(node: str) -> int:
    return NODES.index(node) + 1


def ifname(i: int) -> str:
    return f"cgl-{i}0"  # the lab's interface in node namespace i (tests/galera/lab.py setup)


def port(i: int) -> str:
    return f"cgl-{i}p"  # its port on the switch


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Bench:
    lab: GaleraLab
    agents: Agents
    controller: Controller
    balancer: Balancer
    vip: str
    rate: float
    poll_on_fence: bool = True
    loads: int = 0
    syncing: asyncio.Event = field(default_factory=asyncio.Event)

    def server(self, node: str) -> GaleraServer:
        return self.lab.server(index(node))

    async def writer(self) -> str | None:
        kvs = (await self.agents.store.range(self.agents.keys.galera("galera"))).kvs
        got = read_galera(self.agents.keys, "galera", kvs).writer
        return got[0].node if got else None

    async def step(self) -> float:
        """A controller step, then the LB's sync (both as the store watch wakes them)."""
        await self.controller.step()
        return await self.balancer.sync()

    def new_load(self) -> Load:
        self.loads += 1
        return Load(self.vip, self.rate, self.loads * 10_000_000)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Load]:
        """The client writing through the VIP (once 100 writes were acknowledged)."""
        load = self.new_load()
        await load.start()
        try:
            await load.wait_acked(100)
            yield load
        finally:
            await load.stop()

    async def rows(self, node: str) -> set[int]:
        server = self.server(node)
        await server.execute("SET SESSION wsrep_sync_wait = 1")
        return {int(r[0]) for r in await server.execute("SELECT id FROM bench.w")}

    async def lost(self, load: Load, node: str) -> float:
        return float(len(load.ids() - await self.rows(node)))


def power_off(i: int) -> None:
    """Node ``i`` powered off: its link down first (no FIN or RST leaves it), then every
    process of its namespace killed."""
    netns.set_link(ns_of(i), ifname(i), up=False)
    netns.kill_all(ns_of(i))


def power_on(i: int) -> None:
    netns.set_link(ns_of(i), ifname(i), up=True)


async def survivor_polls(bench: Bench, nodes: list[str], stop: asyncio.Event) -> None:
    """Each survivor's agent polls its member every second, at its own phase (the poll is
    where a member evicts fenced nodes)."""

    async def one(node: str) -> None:
        await asyncio.sleep(random.uniform(0, STATUS_POLL))
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await bench.agents.members[node].status()
            await asyncio.sleep(STATUS_POLL)

    await asyncio.gather(*(one(n) for n in nodes))


async def evicted(bench: Bench, nodes: list[str]) -> bool:
    return any(bench.agents.members[n].evicted for n in nodes)


async def view_of(bench: Bench, node: str, size: int) -> bool:
    status = await bench.server(node).status()
    return status.cluster_size == size and status.healthy


async def writer_power_off(bench: Bench, figures: Figures, tag: str = "writer_off") -> None:
    """The writer node powered off under the load; fenced FENCE_AFTER_S later; the
    controller's step moves the writer record, the LB follows, the survivors evict. The node
    comes back afterwards even when the measure failed (the next cases need three)."""
    old = await bench.writer()
    assert old is not None
    try:
        await _power_off(bench, old, figures, tag)
    finally:
        await node_back(bench, old, figures)


async def _power_off(bench: Bench, old: str, figures: Figures, tag: str) -> None:
    survivors = [n for n in NODES if n != old]
    async with bench.writing() as load:
        stop = asyncio.Event()
        for n in survivors:
            bench.agents.members[n].evicted.clear()
        polls = asyncio.create_task(survivor_polls(bench, survivors, stop))
        await asyncio.sleep(1.0)
        began = time.monotonic()
        power_off(index(old))
        figures[f"{tag}_load"] = load_average()
        view = asyncio.create_task(polled(lambda: view_of(bench, survivors[0], 2), 30, 0.02))
        evict = asyncio.create_task(polled(lambda: evicted(bench, survivors), 30, 0.02))
        await asyncio.sleep(max(0.0, began + FENCE_AFTER_S - time.monotonic()))
        fenced = time.monotonic()
        await bench.agents.fence(old)
        if bench.poll_on_fence:  # the agents' watch saw fenced/<node>: they poll now
            await asyncio.gather(*(bench.agents.members[n].status() for n in survivors))
        await bench.controller.step()
        moved = time.monotonic()
        switched = await bench.balancer.sync()
        seen, sent = await view, await evict
        await asyncio.sleep(3.0)
        stop.set()
        await polls
    figures[f"{tag}_fenced_s"] = fenced - began
    figures[f"{tag}_evict_sent_s"] = (sent or began + 99) - began
    figures[f"{tag}_writer_moved_s"] = moved - began
    figures[f"{tag}_haproxy_switched_s"] = switched - began
    figures[f"{tag}_view_changed_s"] = (seen or began + 99) - began
    figures[f"{tag}_recover_s"] = load.longest_gap(began - 0.2)  # writes failing
    figures[f"{tag}_lost"] = await bench.lost(load, survivors[0])


async def node_back(bench: Bench, node: str, figures: Figures) -> None:
    """``node`` powered on again: its agent registers anew and restarts its member, which
    joins by IST (checked in its log: no SST script ran)."""
    power_on(index(node))
    await bench.agents.reregister(node)
    log = bench.server(node).settings.log_path
    offset = log.stat().st_size
    began = time.monotonic()
    await bench.agents.restart(node)
    await bench.agents.settle(bench.controller)
    figures["node_back_recover_s"] = time.monotonic() - began
    figures["node_back_load"] = load_average()
    with open(log, "rb") as f:
        f.seek(offset)
        said = f.read().decode(errors="replace")
    for n in NODES:  # the agents' next status polls (a member empties its evict list there)
        with contextlib.suppress(Exception):
            await bench.agents.members[n].status()
    figures["node_back_full_sst"] = float("Proceeding with SST" in said)
    figures["node_back_ist"] = float("IST received" in said)
    await bench.balancer.sync()


def medians(runs: list[Figures]) -> Figures:
    """Each figure's median over the runs that gave it."""
    names = sorted({k for r in runs for k in r})
    out = {}
    for name in names:
        values = sorted(r[name] for r in runs if name in r)
        mid = len(values) // 2
        out[name] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return out


async def guarded(name: str, case: object, figures: Figures) -> bool:
    """Run one case; a failure is said in one line and recorded (``<name>_failed``)."""
    assert asyncio.iscoroutine(case)
    try:
        await case
        return True
    except Exception as exc:  # a failed run is reported, the bench goes on
        print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
        figures[f"{name}_failed"] = figures.get(f"{name}_failed", 0.0) + 1
        return False


async def all_cases(bench: Bench, figures: Figures, runs: int) -> None:
    for poll_on_fence, tag in ((False, "writer_off_poll"), (True, "writer_off")):
        bench.poll_on_fence = poll_on_fence
        many: list[Figures] = []
        for _ in range(runs):
            one: Figures = {}
            if await guarded(tag, writer_power_off(bench, one, tag), figures):
                many.append(one)
                said = ", ".join(f"{k.removeprefix(tag + '_')} {v:.2f}" for k, v in one.items())
                print(f"{tag} run {len(many)}: {said}", flush=True)
        figures.update(medians(many))
        for name in (f"{tag}_recover_s", f"{tag}_view_changed_s"):  # the spread of the runs
            values = [r[name] for r in many if name in r]
            if len(values) > 1:
                figures[f"{name}_min"], figures[f"{name}_max"] = min(values), max(values)
    await guarded("partition", partition(bench, figures), figures)
    await guarded("full_reorder", full_reorder(bench, figures), figures)
    await guarded("one_gone", one_gone(bench, figures), figures)


async def direct_write(server: GaleraServer, i: int) -> bool:
    """One insert straight to ``server`` (its socket, not HAProxy): True when it committed."""
    try:
        await asyncio.wait_for(server.execute(f"INSERT INTO bench.w VALUES ({i})"), 2.0)
        return True
    except Exception:
        return False


async def partition(bench: Bench, figures: Figures) -> None:
    """The writer's node cut off from every other node and the LB (its switch port), no
    fence device: its agent cannot renew its lease, which ends lease_ttl (+ up to etcd's
    0.5 s check, modelled 0.25 s) later; the controller moves the writer, the LB follows; the
    survivors drop it after evs.suspect_timeout; writes straight to it must all fail. Then
    the cut heals: it rejoins by itself (IST), its agent registers again."""
    old = await bench.writer()
    assert old is not None
    i, survivors = index(old), [n for n in NODES if n != old]
    peers = [port(index(n)) for n in survivors] + ["cgb-lbp"]
    ttl = bench.agents.spec.effective_timing.lease_ttl
    async with bench.writing() as load:
        await asyncio.sleep(1.0)
        began = time.monotonic()
        netns.partition_port(galera_lab_module.SWITCH, port(i), peers)
        figures["partition_load"] = load_average()
        view = asyncio.create_task(polled(lambda: view_of(bench, survivors[0], 2), 30, 0.05))
        accepted, probe = 0, 5_000_000
        while time.monotonic() < began + ttl + 0.25:
            probe += 1
            accepted += await direct_write(bench.server(old), probe)
            await asyncio.sleep(0.2)
        await bench.agents.expire(old)
        await bench.step()
        moved = time.monotonic()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the minority side, on: never a write
            probe += 1
            accepted += await direct_write(bench.server(old), probe)
            await asyncio.sleep(0.2)
        pool = await bench.balancer.service.runtime.servers()
        seen = await view
        netns.heal_port(galera_lab_module.SWITCH, port(i))
        healed = time.monotonic()
        back = await polled(lambda: view_of(bench, old, 3), 120, 0.1)
        await bench.agents.reregister(old)
        await bench.agents.publish(old, "promoted")
        await bench.step()
        await asyncio.sleep(1.0)
    figures["partition_writer_moved_s"] = moved - began
    figures["partition_view_changed_s"] = (seen or began + 99) - began
    figures["partition_recover_s"] = load.longest_gap(began - 0.2)  # writes failing
    figures["partition_minority_accepted"] = float(accepted)
    figures["partition_left_pool"] = float(pool[("galera", old)].admin == "maint")
    figures["partition_rejoin_recover_s"] = (back or healed + 999) - healed
    figures["partition_lost"] = await bench.lost(load, survivors[0])


async def first_write_via_vip(load: Load, since: float, limit: float = 180.0) -> float:
    """Seconds from ``since`` to the first acknowledged write after it (through HAProxy)."""
    got = await polled(lambda: _acked_after(load, since), limit, 0.05)
    if got is None:
        raise RuntimeError(f"no write acknowledged within {limit:g}s")
    return (load.first_ack_after(since) or got) - since


async def _acked_after(load: Load, since: float) -> bool:
    return load.first_ack_after(since) is not None


async def follow(bench: Bench, stop: asyncio.Event) -> None:
    """The LB following the store while a recovery runs (its watch, polled every 50 ms)."""
    await bench.balancer.follow(stop)


async def power_cut_all(bench: Bench) -> Load:
    """Every node powered off at once under the load; returns the load (still running)."""
    load = bench.new_load()
    await load.start()
    await load.wait_acked(100)
    await asyncio.sleep(1.0)
    for i in range(1, len(NODES) + 1):
        netns.set_link(ns_of(i), ifname(i), up=False)
    for i in range(1, len(NODES) + 1):
        netns.kill_all(ns_of(i))
    return load


@contextlib.asynccontextmanager
async def power_cut(bench: Bench, tag: str, figures: Figures) -> AsyncIterator[Load]:
    """Every node powered off under the load; the LB follows the store until the end."""
    load = await power_cut_all(bench)
    figures[f"{tag}_load"] = load_average()
    stop = asyncio.Event()
    lb = asyncio.create_task(follow(bench, stop))
    try:
        yield load
    finally:
        stop.set()
        await lb
        await load.stop()


async def full_reorder(bench: Bench, figures: Figures) -> None:
    """Every node powered off at once under the load, then back one by one in the reverse
    of the spec's order, 2 s apart (each agent restarts its member: ``--wsrep-recover``,
    report); the controller claims the bootstrap for the most advanced node once every node
    reported. ``_recover_s`` counts from the last node's return to the first write
    acknowledged through HAProxy."""
    async with power_cut(bench, "full_reorder", figures) as load:
        for node in reversed(NODES):
            power_on(index(node))
            last = time.monotonic()
            await bench.agents.restart(node)
            await asyncio.sleep(max(0.0, last + 2.0 - time.monotonic()))
        await bench.agents.settle(bench.controller, ROUNDS)
        figures["full_reorder_synced_s"] = time.monotonic() - last
        figures["full_reorder_recover_s"] = await first_write_via_vip(load, last)
    figures["full_reorder_lost"] = await bench.lost(load, NODES[0])


async def one_gone(bench: Bench, figures: Figures, gone: str = "db1") -> None:
    """Every node powered off; ``gone`` never returns (fenced: its power switch says off).
    The two others return; the controller waits ``bootstrap_wait`` for it, then claims a
    bootstrap from the majority (partial). ``_recover_s`` counts from the last return."""
    wait = bench.agents.spec.resources["galera"].galera.bootstrap_wait  # type: ignore[union-attr]
    back = [n for n in NODES if n != gone]
    async with power_cut(bench, "one_gone", figures) as load:
        await bench.agents.fence(gone)
        for node in back:
            power_on(index(node))
            await bench.agents.restart(node)
        last = time.monotonic()
        await bench.agents.settle(bench.controller, ROUNDS, tuple(back), limit=wait + 60)
        figures["one_gone_wait_s"] = wait
        figures["one_gone_recover_s"] = await first_write_via_vip(load, last)
    figures["one_gone_lost"] = await bench.lost(load, back[0])
