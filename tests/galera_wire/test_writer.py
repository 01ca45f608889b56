"""One writer: every load balancer sends a balanced galera service's traffic to the node its
writer record names and to no other (issue 16 point 2), and the controller writes that record
from the members' reports, moving it only on loss or a planned stop."""

from __future__ import annotations

import itertools

from corral.agent.lb import LbDuty
from corral.core.lbstate import desired_servers
from corral.drivers.galera_member import PRIMARY_DETAIL
from corral.records import StatusInstance, StatusRecord
from corral.records.galera import WriterRecord, read_galera
from corral.spec import load_spec_text
from tests.galera_wire.test_gate import NODES, World
from tests.spec.test_galera_spec import HEAD

BALANCED = HEAD + (
    "    galera: {}\n"
    "    on: {role: db}\n"
    "    balance: {port: 3306, via: dbvip, mode: tcp}\n"
    "  dbvip: {vip: 198.18.0.100/24, on: {role: db}}\n"
    "  lb: {haproxy: {}, on: {role: db}}\n"
)


def test_only_the_writer_takes_traffic_and_no_writer_means_none() -> None:
    spec = load_spec_text(BALANCED)
    health = {("galera", n): "healthy" for n in NODES}
    got = desired_servers(spec, set(NODES), health, writers={"galera": "db2"})
    assert got["galera"] == {"db1": "maint", "db2": "ready", "db3": "maint"}
    nobody = desired_servers(spec, set(NODES), health)
    assert set(nobody["galera"].values()) == {"maint"}
    lost = desired_servers(spec, set(NODES), health, {"db2"}, {"galera": "db2"})
    assert set(lost["galera"].values()) == {"maint"}  # its own gossip lost it: nowhere


def pick(bits: int) -> set[str]:
    return {n for i, n in enumerate(NODES) if bits >> i & 1}


def test_two_load_balancers_never_send_writes_to_different_nodes() -> None:
    """Every pair of views two balancers may hold at once (online sets, reported health,
    gossip deaths all differing), following one writer record: the servers they put in
    rotation are, together, at most that one node."""
    spec = load_spec_text(BALANCED)
    views = []
    for online_bits, healthy_bits, lost_bits in itertools.product(range(8), repeat=3):
        health = {("galera", n): "healthy" for n in pick(healthy_bits)}
        views.append((pick(online_bits), health, pick(lost_bits)))
    for writer in NODES:
        ready: set[str] = set()
        for online, health, lost in views:
            states = desired_servers(spec, online, health, lost, {"galera": writer})["galera"]
            ready |= {n for n, s in states.items() if s == "ready"}
        assert ready == {writer}


async def status(
    w: World, node: str, role: str, health: str = "healthy", detail: str = PRIMARY_DETAIL
) -> None:
    record = StatusRecord((StatusInstance(role, health, detail),))
    await w.store.put(w.keys.status(node, "galera"), record.dump(), lease=w.leases[node])


async def writer(w: World) -> WriterRecord | None:
    kvs = (await w.store.range(w.keys.galera("galera"))).kvs
    got = read_galera(w.keys, "galera", kvs).writer
    return got[0] if got else None


async def test_the_controller_names_one_writer_keeps_it_and_moves_it_only_on_loss() -> None:
    w = World()
    w.spec = load_spec_text(BALANCED)
    for n in NODES:
        await w.register(n)
        await status(w, n, "promoted")
    c = await w.controller("db1")
    await c.step()
    first = await writer(w)
    assert first is not None and first.node == "db1" and "there was no writer" in first.reason
    await status(w, "db3", "promoted", "unhealthy")
    await c.step()
    assert (await writer(w)) == first  # another node's trouble never moves it
    await status(w, "db2", "promoted", detail="Donor/Desynced, Primary: not ready")
    await c.step()
    assert (await writer(w)) == first  # a donor elsewhere changes nothing
    await status(w, "db1", "promoted", detail="Donor/Desynced, Primary: not ready")
    await status(w, "db2", "promoted")
    await c.step()
    donor = await writer(w)
    assert donor is not None and donor.node == "db2"  # the writer became a donor: not ready
    await status(w, "db2", "promoted", "unhealthy")  # its checks fail: not ready either
    await c.step()
    await status(w, "db1", "promoted")
    await c.step()
    moved = await writer(w)
    assert moved is not None and moved.node == "db1" and "db2 is not ready" in moved.reason
    await status(w, "db2", "promoted")  # back: it does not take the role back (no flapping)
    await c.step()
    assert (await writer(w)) == moved
    assert any('"writer"' in e for e in await w.events())


async def test_every_load_balancer_reads_the_one_writer_record() -> None:
    w = World()
    w.spec = load_spec_text(BALANCED)
    for n in NODES:
        await w.register(n)
        await status(w, n, "promoted")
    await w.store.put(w.keys.galera_writer("galera"), WriterRecord("db3", "test").dump())
    for lb in NODES:
        view = await LbDuty(w.store, w.keys, lb, w.clock).view(w.spec)
        assert view.writers == {"galera": "db3"}
        states = desired_servers(w.spec, view.online, view.health, writers=view.writers)
        assert [n for n, s in states["galera"].items() if s == "ready"] == ["db3"]
    await w.store.put(w.keys.galera_writer("galera"), b"{broken")
    assert (await LbDuty(w.store, w.keys, "db1", w.clock).view(w.spec)).writers == {}
