"""GossipNode: the asyncio shell, on the in-memory twin and on real loopback sockets.

These run in real time with the ``local`` profile (50 ms probes); each waits for an outcome
with a generous bound instead of asserting on timings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from corral.core.membership import MemberChanged, MemberState, NodeMeta, profile
from corral.net import GossipNode, Keyring, MemoryNetwork, UdpTransport, free_port

KEY = b"k" * 32
CONFIG = profile("local")


async def until(cond: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 (polling state that has no event)
            await asyncio.sleep(0.01)


def state(node: GossipNode, name: str) -> str | None:
    return next((m.state for m in node.members() if m.name == name), None)


@pytest.fixture
async def memory_cluster() -> AsyncIterator[list[GossipNode]]:
    net = MemoryNetwork(seed=1)
    nodes: list[GossipNode] = []
    for i in range(4):
        seeds = [nodes[0].address] if nodes else []
        meta = NodeMeta(roles=("controller",), site="dc1", api=f"mem:{9000 + i}")
        node = GossipNode(f"n{i}", net.transport(), Keyring([KEY]), CONFIG, seeds=seeds, meta=meta)
        await node.start()
        nodes.append(node)
    try:
        await until(
            lambda: all(len([m for m in n.members() if m.state == "alive"]) == 4 for n in nodes)
        )
        yield nodes
    finally:
        for node in nodes:
            await node.stop(leave=False)


async def test_members_converge_with_metadata(memory_cluster: list[GossipNode]) -> None:
    n0 = memory_cluster[0]
    rows = {m.name: m for m in n0.members()}
    assert rows["n0"].is_self and rows["n0"].last_seen is None
    assert rows["n3"].meta.api == "mem:9003" and rows["n3"].meta.roles == ("controller",)
    assert all(m.incarnation == 0 for m in rows.values())
    await until(lambda: all(m.last_seen is not None for m in n0.members() if not m.is_self))


async def test_abrupt_stop_is_detected_and_reported_as_changes(
    memory_cluster: list[GossipNode],
) -> None:
    n0, victim = memory_cluster[0], memory_cluster[3]
    seen: list[MemberChanged] = []
    n0.subscribe(seen.append)

    async def first_death() -> MemberChanged:
        async for change in n0.changes():
            if change.member.state is MemberState.DEAD:
                return change
        raise AssertionError("iterator ended")

    waiter = asyncio.create_task(first_death())
    await victim.stop(leave=False)
    change = await asyncio.wait_for(waiter, 5.0)
    assert change.member.name == "n3"
    assert [c.member.state for c in seen if c.member.name == "n3"][-1] is MemberState.DEAD
    await until(lambda: all(state(n, "n3") == "dead" for n in memory_cluster[:3]))


async def test_graceful_stop_is_seen_as_left(memory_cluster: list[GossipNode]) -> None:
    await memory_cluster[2].stop(leave=True)
    await until(lambda: all(state(n, "n2") == "left" for n in memory_cluster[:2]), within=2.0)


async def test_a_cut_link_is_bridged_by_indirect_probes(memory_cluster: list[GossipNode]) -> None:
    net = memory_cluster[0].transport.network  # type: ignore[attr-defined]
    net.cut(memory_cluster[0].address, memory_cluster[1].address)
    await asyncio.sleep(1.0)
    assert all(state(n, m.name) == "alive" for n in memory_cluster for m in memory_cluster)


async def test_metadata_update_reaches_everyone(memory_cluster: list[GossipNode]) -> None:
    memory_cluster[1].update_meta(NodeMeta(roles=("lb",), site="dc2", api="mem:1"))
    await until(
        lambda: all(
            next(m for m in n.members() if m.name == "n1").meta.site == "dc2"
            for n in memory_cluster
        )
    )
    with pytest.raises(ValueError, match="metadata"):
        memory_cluster[1].update_meta(NodeMeta(roles=tuple("r" * 60 for _ in range(16))))


@pytest.mark.parametrize("threaded", [False, True], ids=["on-loop", "threaded"])
async def test_real_sockets_join_detect_and_reject_foreign_keys(threaded: bool) -> None:
    nodes: list[GossipNode] = []
    try:
        for i in range(3):
            seeds = [nodes[0].address] if nodes else []
            transport = UdpTransport("127.0.0.1", free_port(), threaded=threaded)
            node = GossipNode(f"u{i}", transport, Keyring([KEY]), CONFIG, seeds=seeds)
            await node.start()
            nodes.append(node)
        async with asyncio.timeout(5):
            await asyncio.gather(*(n.wait_joined() for n in nodes))
        await until(lambda: all(state(n, "u2") == "alive" for n in nodes[:2]))
        # A node with another key cannot join: its packets are dropped and counted.
        stranger = GossipNode(
            "x",
            UdpTransport("127.0.0.1", free_port(), threaded=threaded),
            Keyring([b"z" * 32]),
            CONFIG,
            seeds=[nodes[0].address],
        )
        await stranger.start()
        await until(lambda: nodes[0].wire.drops.unauthenticated > 0)
        assert state(nodes[0], "x") is None and not stranger.joined
        await stranger.stop(leave=False)
        # Key rotation at run time: add, use, remove, and the cluster never notices.
        new = b"n" * 32
        for n in nodes:
            n.wire.keyring.add(new)
        for n in nodes:
            n.wire.keyring.use(new)
        for n in nodes:
            n.wire.keyring.remove(KEY)
        await asyncio.sleep(0.5)
        assert all(state(n, m.name) == "alive" for n in nodes for m in nodes)
        await nodes[2].stop(leave=False)
        await until(lambda: all(state(n, "u2") == "dead" for n in nodes[:2]))
    finally:
        for node in nodes:
            await node.stop(leave=False)


@pytest.fixture
async def threaded_cluster() -> AsyncIterator[list[GossipNode]]:
    nodes: list[GossipNode] = []
    try:
        for i in range(3):
            seeds = [nodes[0].address] if nodes else []
            node = GossipNode.udp(
                f"t{i}", f"127.0.0.1:{free_port()}", Keyring([KEY]), CONFIG, seeds=seeds
            )
            await node.start()
            nodes.append(node)
        await until(lambda: all(state(n, m.name) == "alive" for n in nodes for m in nodes))
        yield nodes
    finally:
        for node in nodes:
            await node.stop(leave=False)


async def test_threaded_member_tells_subscribers_on_the_event_loop(
    threaded_cluster: list[GossipNode],
) -> None:
    n0, victim = threaded_cluster[0], threaded_cluster[2]
    assert n0.transport.threaded
    loop_thread = threading.get_ident()
    calls: list[tuple[str, str, int]] = []
    n0.subscribe(
        lambda c: calls.append((c.member.name, c.member.state.label, threading.get_ident()))
    )
    await victim.stop(leave=False)
    await until(lambda: ("t2", "dead") in {(n, s) for n, s, _ in calls})
    assert {t for _, _, t in calls} == {loop_thread}
    # the metadata update enters the core from the loop while the pump thread runs it
    threaded_cluster[1].update_meta(NodeMeta(site="dc9"))
    await until(lambda: next(m for m in n0.members() if m.name == "t1").meta.site == "dc9")


async def test_threaded_members_keep_probing_while_the_event_loop_is_blocked(
    threaded_cluster: list[GossipNode],
) -> None:
    """A busy event loop (a long scheduling round, a slow callback) does not delay acks: with
    the loop blocked for 20 protocol periods nobody is suspected. On the loop (the in-memory
    cluster in this file) the same block makes every member miss every ack."""
    before = sum(n.core.stats.probes for n in threaded_cluster)
    time.sleep(1.0)  # noqa: ASYNC251 (blocking the loop is the point)
    assert sum(n.core.stats.probes for n in threaded_cluster) - before >= 3 * 10
    await asyncio.sleep(0.3)
    assert all(n.core.stats.suspicions == 0 for n in threaded_cluster)
    assert all(state(n, m.name) == "alive" for n in threaded_cluster for m in threaded_cluster)
