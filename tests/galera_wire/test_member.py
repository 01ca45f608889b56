"""A Galera member as the agent drives it (:mod:`corral.drivers.galera_member`), over the
fake server: unpromoted reports, promote bootstraps only under this node's claim and joins
only a Primary component, status is promoted only when synced and Primary; the store link;
the lease guard's self-fence reaches mariadbd (rule 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral.agent.assigned import Registration
from corral.agent.galera import StoreGaleraLink
from corral.core.agent.core import AgentCore
from corral.core.galera.state import Position
from corral.drivers import NodeContext, make_driver
from corral.drivers.base import DriverError, NodeFault
from corral.drivers.galera_member import PRIMARY_DETAIL, GaleraMember, settings_for
from corral.records import FencedRecord, StatusInstance, StatusRecord
from corral.records.galera import BootstrapClaim, read_galera
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.galera_wire.fakes import UUID, FakeCluster, FakeLink, FakeServer, member_uuid
from tests.spec.test_galera_spec import HEAD

SPEC = (
    HEAD
    + "    galera: {base_dir: BASE, provider_options: {gcache.size: 64M}}\n"
    + ("    on: {role: db}\n")
)


def member(node: str, cluster: FakeCluster, **kw: int) -> tuple[GaleraMember, FakeServer, FakeLink]:
    server, link = FakeServer(node, cluster, **kw), FakeLink(node)
    m = GaleraMember("galera", server, link)
    m.confirm = 0.0  # the confirmation's wait is tested on its own
    return m, server, link


def claim_for(node: str, seqno: int, *, force: bool = False) -> BootstrapClaim:
    return BootstrapClaim(node, 7, UUID, seqno, force=force, reason="test")


async def test_started_means_stopped_and_reported_even_if_a_server_was_left_running() -> None:
    m, server, link = member("db1", FakeCluster(seqno=5), seqno=5)
    server.up = True  # left by an earlier life
    await m.start()
    assert not server.up and server.calls[:2] == ["initialize", "stop"]
    assert link.reports[-1].grastate is not None and link.reports[-1].grastate.position.seqno == 5
    status = await m.status()
    assert status.state == "running" and not status.promoted


async def test_promote_without_claim_or_primary_starts_nothing() -> None:
    cluster = FakeCluster()
    m, server, _ = member("db1", cluster, seqno=5)
    await m.start()
    with pytest.raises(NodeFault, match="no Primary component to join and no bootstrap claim"):
        await m.promote()
    assert not server.up and cluster.bootstraps == []
    assert not any(c.startswith("start") for c in server.calls)


async def test_the_claim_holder_bootstraps_after_marking_safe_then_a_joiner_joins() -> None:
    cluster = FakeCluster(seqno=9)
    first, s1, l1 = member("db1", cluster)
    second, s2, l2 = member("db2", cluster)
    for s in (s1, s2):
        s.initialized = True
        s.crash()  # a full crash: both say seqno -1, safe_to_bootstrap 0
    await first.start()
    await second.start()
    assert l1.reports[-1].recovered == Position(UUID, 9)  # --wsrep-recover ran
    l1.claimed = claim_for("db1", 9, force=True)
    await first.promote()
    assert s1.calls[-3:] == [
        "allow_bootstrap",
        f"start bootstrap=True position={Position(UUID, 9)}",
        "ensure_users",  # on the new Primary only
    ]
    assert "ensure_users" not in s2.calls
    assert (await first.status()).promoted and (await first.status()).detail == PRIMARY_DETAIL
    l2.primaries = ("db1",)
    await second.promote()
    assert s2.calls[-1] == f"start bootstrap=False position={Position(UUID, 9)}"
    assert cluster.bootstraps == ["db1"] and cluster.primary == {"db1", "db2"}


async def test_a_joiner_is_joined_and_the_bootstrap_node_only_once_its_claim_is_gone() -> None:
    """Rule 1g: the status says ``joined`` (off the lease) for a joiner at once; for the
    bootstrap node only after a read of the claim finds it gone (the store away keeps it
    held); a stopped member is held again."""
    cluster = FakeCluster(seqno=4)
    first, _, l1 = member("db1", cluster, seqno=4)
    second, _, l2 = member("db2", cluster, seqno=4)
    for m in (first, second):
        await m.start()
        assert not (await m.status()).joined  # mariadbd stopped
    l1.claimed = claim_for("db1", 4, force=True)
    await first.promote()
    assert not (await first.status()).joined  # the claim names it
    l2.primaries = ("db1",)
    await second.promote()
    assert (await second.status()).joined
    l1.claimed, l1.store_away = None, True
    assert not (await first.status()).joined  # cannot read the claim: held
    l1.store_away = False
    assert (await first.status()).joined  # the controller cleared it
    l1.store_away = True
    assert (await first.status()).joined  # and stays so, store or not
    await first.stop()
    assert not (await first.status()).joined


async def test_a_stop_with_the_store_away_stops_and_reports_once_it_is_back() -> None:
    """The self-fence (rule 1) stops a member while the store is away: the stop must work,
    and its report reach the store later (the controller waits on it)."""
    cluster = FakeCluster(seqno=4)
    m, server, link = member("db1", cluster, seqno=4)
    await m.start()
    link.claimed = claim_for("db1", 4, force=True)
    await m.promote()
    link.store_away, sent = True, len(link.reports)
    await m.stop()
    assert not server.up and len(link.reports) == sent
    assert "not reported yet" in (await m.status()).detail
    link.store_away = False
    assert "state reported" in (await m.status()).detail
    assert link.reports[-1].grastate is not None and link.reports[-1].grastate.safe_to_bootstrap


async def test_a_survivor_evicts_a_fenced_member_at_its_poll_and_only_once() -> None:
    """Rule 2 and ``evs.evict``: once db3's fence succeeded, db1's poll drops it from the
    group; the store away or nothing fenced evicts nobody and fails nothing."""
    cluster = FakeCluster(seqno=4)
    members = {n: member(n, cluster, seqno=4) for n in ("db1", "db2", "db3")}
    members["db1"][2].claimed = claim_for("db1", 4, force=True)
    for node, (m, _, link) in members.items():
        await m.start()
        link.primaries = ("db1",) if node != "db1" else ()
        await m.promote()
    m1, _, l1 = members["db1"]
    await m1.status()
    assert cluster.evicted == [] and cluster.primary == {"db1", "db2", "db3"}
    members["db3"][1].crash()  # powered off by its fence, still in the view until suspected
    cluster.primary.add("db3")
    l1.fenced, l1.store_away = {"db3"}, True
    assert (await m1.status()).promoted and cluster.evicted == []
    l1.store_away = False
    assert (await m1.status()).promoted
    assert cluster.evicted == [member_uuid("db3")] and cluster.primary == {"db1", "db2"}
    await m1.status()
    assert cluster.evicted == [member_uuid("db3")]
    server1 = members["db1"][1]
    assert "evict clear" not in server1.calls  # db3 still gone: its eviction stays
    l1.fenced = set()  # db3 rebooted and registered again: the list is emptied, once
    await m1.status()
    await m1.status()
    assert server1.calls.count("evict clear") == 1 and m1.evicted == set()
    assert cluster.evicted == []


async def test_store_link_names_fenced_nodes_gone_until_they_register_again() -> None:
    store, keys = MemoryStore(), Keys("c1")
    me = Registration("db1", 11)
    link = StoreGaleraLink(store, keys, "galera", lambda: me, lambda: None, lambda: 5.0)
    assert await link.gone() == frozenset()
    reg = await store.put(keys.node("db3"), b"{}")
    await store.put(keys.fenced("db3"), FencedRecord(reg).dump())
    await store.put(keys.fenced("db1"), FencedRecord(1).dump())  # never this node itself
    assert await link.gone() == {"db3"}
    await store.delete(keys.node("db3"))  # its lease went with the fence
    assert await link.gone() == {"db3"}
    await store.put(keys.node("db3"), b"{}")  # rebooted and registered again
    assert await link.gone() == frozenset()


async def test_an_adopted_server_is_held_until_the_claim_is_read() -> None:
    cluster = FakeCluster(seqno=4)
    m, server, link = member("db1", cluster, seqno=4)
    server.up = True  # left running by the previous agent
    assert await m.adopt()
    link.claimed, link.store_away = claim_for("db1", 4), True
    assert not (await m.status()).joined
    link.store_away = False
    assert not (await m.status()).joined  # it is the bootstrap node
    link.claimed = None
    assert (await m.status()).joined


async def test_a_joiner_never_starts_on_a_primary_that_vanishes_within_the_confirmation() -> None:
    """All mariadbds killed at once: the others' records still say promoted until their
    agents' polls; a joiner started on them blocked the recovery for its start timeout."""
    cluster = FakeCluster(seqno=4)
    m, server, link = member("db1", cluster, seqno=4)
    await m.start()
    m.confirm = 0.05
    link.primaries = ("db2",)
    stale = asyncio.create_task(m.promote())
    await asyncio.sleep(0.01)
    link.primaries = ()  # db2's agent published its failure meanwhile
    with pytest.raises(NodeFault, match="no Primary component to join"):
        await stale
    assert not server.up and "start bootstrap=False" not in " ".join(server.calls)


async def test_a_donor_or_non_primary_member_is_running_but_not_promoted() -> None:
    cluster = FakeCluster()
    m, server, link = member("db1", cluster, seqno=3)
    await m.start()
    link.claimed = claim_for("db1", 3, force=True)
    await m.promote()
    server.local_state = 2
    donor = await m.status()
    assert donor.state == "running" and not donor.promoted and "Donor" in donor.detail
    server.local_state = 4
    cluster.primary.discard("db1")  # partitioned away: non-Primary
    lost = await m.status()
    assert not lost.promoted and "non-Primary" in lost.detail


async def test_a_promoted_member_whose_server_died_is_failed_and_stop_is_idempotent() -> None:
    cluster = FakeCluster()
    m, server, link = member("db1", cluster)
    await m.start()
    cluster.primary.add("db9")
    link.primaries = ("db9",)
    await m.promote()
    server.crash()
    assert (await m.status()).state == "failed"
    await m.stop()
    await m.stop()
    assert not server.up and (await m.status()).state == "running"  # unpromoted again
    assert link.reports[-1].recovered is not None


async def test_promoting_a_running_server_does_nothing() -> None:
    cluster = FakeCluster()
    m, server, _ = member("db1", cluster)
    server.up = True
    assert await m.adopt()
    await m.promote()
    assert server.calls == []


async def test_a_server_refusing_the_bootstrap_fails_the_promote() -> None:
    m, server, link = member("db1", FakeCluster(), seqno=4)
    await m.start()
    link.claimed = claim_for("db1", 4, force=False)  # grastate says 0 and the claim no force
    with pytest.raises(DriverError, match="not be safe to bootstrap"):
        await m.promote()
    assert not server.up


# --- the store link ------------------------------------------------------------------------


async def test_store_link_reports_under_the_lease_and_claims_only_for_this_registration() -> None:
    store, keys = MemoryStore(), Keys("c1")
    lease = (await store.grant(30)).id
    me = Registration("db1", 11)
    link = StoreGaleraLink(store, keys, "galera", lambda: me, lambda: lease, lambda: 5.0)
    server = FakeServer("db1", FakeCluster(), seqno=8)
    await link.report(await server.inspect())
    got = read_galera(keys, "galera", (await store.range(keys.galera("galera"))).kvs)
    assert got.states()["db1"].grastate == server.grastate
    assert (await store.get(keys.galera_report("galera", "db1"))).lease == lease  # type: ignore[union-attr]
    assert not await link.holds_claim()
    for other in (BootstrapClaim("db1", 10, UUID, 8), BootstrapClaim("db2", 11, UUID, 8)):
        await store.put(keys.galera_bootstrap("galera"), other.dump())
        assert await link.claim() is None  # an earlier life of db1, or another node
        assert await link.holds_claim() == (other.node == "db1")  # rule 1g: any life of db1
    mine = BootstrapClaim("db1", 11, UUID, 8)
    await store.put(keys.galera_bootstrap("galera"), mine.dump())
    assert await link.claim() == mine
    await store.put(keys.galera_bootstrap("galera"), b"{not json")
    assert await link.claim() is None
    assert await link.holds_claim()  # unreadable: never let a bootstrap node off the lease


async def test_store_link_sees_a_primary_only_in_other_nodes_promoted_healthy_records() -> None:
    store, keys = MemoryStore(), Keys("c1")
    me = Registration("db1", 11)
    link = StoreGaleraLink(store, keys, "galera", lambda: me, lambda: None, lambda: 5.0)
    await link.report(await FakeServer("db1", FakeCluster(), seqno=1).inspect())  # no lease
    assert await store.get(keys.galera_report("galera", "db1")) is None
    rows = {
        ("db1", "galera"): StatusInstance("promoted", "healthy"),  # this node itself
        ("db2", "galera"): StatusInstance("promoted", "unhealthy"),
        ("db3", "other"): StatusInstance("promoted", "healthy"),
        ("db4", "galera"): StatusInstance("started", "healthy"),
    }
    for (node, res), inst in rows.items():
        await store.put(keys.status(node, res), StatusRecord((inst,)).dump())
    assert await link.primary() == ()
    await store.put(
        keys.status("db5", "galera"), StatusRecord((StatusInstance("promoted"),)).dump()
    )
    assert await link.primary() == ("db5",)


# --- spec to server, and the lease guard (rule 1) ------------------------------------------


def test_settings_come_from_the_spec(tmp_path: Path) -> None:
    spec = load_spec_text(SPEC.replace("BASE", str(tmp_path)))
    ctx = NodeContext("db2", "198.18.0.12")
    s = settings_for("galera", spec.resources["galera"], ctx, spec)
    assert s.peers == ("198.18.0.11", "198.18.0.12", "198.18.0.13")
    assert s.base_dir == tmp_path / "galera" and s.cluster == "c1-galera"
    assert "evs.suspect_timeout=PT2.25S" in s.provider_options
    assert s.provider_options.endswith("gcache.size=64M")


async def test_the_lease_guard_lists_galera_and_its_driver_stops_mariadbd(tmp_path: Path) -> None:
    """Rule 1: a galera instance not known to be joined (a bootstrapping one) is guarded
    for the agent's self-fence and the lease guard (rule 1g lets a joined one off), and the
    guard's driver (made from the spec alone) stops a server that is not running without
    error."""
    spec = load_spec_text(SPEC.replace("BASE", str(tmp_path)))
    core = AgentCore(spec, "db1")
    assert core.exclusive("galera") and core.guarded("galera")
    stops = core.self_fence(1e9, ["galera"], keep_deadline=0.0)
    assert [s.key for s in stops] == ["galera"]
    core.member_joined("galera", True)
    assert core.exclusive("galera") and not core.guarded("galera")
    assert core.self_fence(1e9, ["galera"], keep_deadline=0.0) == []
    ctx = NodeContext("db1", "198.18.0.11", state_dir=tmp_path)
    driver = make_driver("galera", spec.resources["galera"], ctx, spec=spec)
    assert isinstance(driver, GaleraMember) and driver.link is None
    await driver.stop()
    with pytest.raises(DriverError, match="needs the spec"):
        make_driver("galera", spec.resources["galera"], ctx)
