"""Agents' gossip members follow the keyring in the store while they run: real UDP members on
loopback (``AgentGossip``), each fed by the agent's watch (``WatchFeed``) and acknowledging
what it applied, rotated by ``corral keys rotate``'s code. No member may suspect another and no
packet may go unread for want of a key, at any point of the rotation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from corral.agent.events import EventLog
from corral.agent.membership import AgentGossip
from corral.agent.view import StoreView
from corral.agent.watch import WatchFeed
from corral.cli.keys import Rotator
from corral.core.membership import MemberChanged
from corral.net import GossipNode, Keyring, MemoryNetwork, free_port
from corral.net.keyring import KeyringError
from corral.records import KeyringRecord, RegistrationRecord, fingerprint
from corral.spec import Spec, load_spec_text
from corral.store import Keys, MemoryStore

from ..membership.test_gossip import CONFIG, state, until

KEYS = Keys("follow")


def spec(port: int) -> Spec:
    return load_spec_text(
        f"""
cluster: follow
profile: local
store: {{etcd: {{endpoints: ["http://127.0.0.1:1"]}}}}
gossip: {{port: {port}}}
nodes:
  n1: {{address: 127.0.0.1}}
  n2: {{address: 127.0.0.2}}
  n3: {{address: 127.0.0.3}}
resources: {{}}
"""
    )


class Node:
    """The agent's parts that keep its gossip keyring: member, watch, publish under a lease."""

    def __init__(self, spec: Spec, name: str, store: MemoryStore) -> None:
        self.name, self.store = name, store
        self.gossip = AgentGossip(spec, name, store, KEYS)
        events = EventLog(store, KEYS, name, time.time)

        async def no_spec(_raw: bytes) -> None:
            return None

        self.watch = WatchFeed(store, KEYS, b"-", events, no_spec, StoreView())
        self.watch.on_keyring = self.gossip.follow
        self.changes: list[MemberChanged] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        lease = (await self.store.grant(30)).id
        await self.store.put(KEYS.node(self.name), RegistrationRecord("x").dump(), lease=lease)
        await self.gossip.start()
        assert self.gossip.member is not None
        self.gossip.member.subscribe(self.changes.append)
        self.tasks = [
            asyncio.create_task(self.watch.run()),
            asyncio.create_task(self._publish(lease)),
        ]

    async def _publish(self, lease: int) -> None:
        while True:  # the agent publishes at each round; rounds follow every store change
            await self.gossip.publish(lease)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.gossip.stop()

    @property
    def member(self) -> GossipNode:
        assert self.gossip.member is not None
        return self.gossip.member


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    store = MemoryStore()
    the_spec = spec(free_port())
    made = [Node(the_spec, name, store) for name in ("n1", "n2", "n3")]
    try:
        for node in made:
            await node.start()
        await until(lambda: all(state(n.member, o.name) == "alive" for n in made for o in made))
        yield made
    finally:
        for node in made:
            await node.stop()


async def test_a_rotation_under_running_members_suspects_nobody_and_drops_nothing(
    nodes: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.agent.membership")
    store = nodes[0].store
    new = b"N" * 32
    said: list[str] = []
    await Rotator(store, KEYS, timeout=10.0, poll=0.01, say=said.append, fresh=lambda: new).run()
    assert said[-1].startswith("rotation to key") and "finished" in said[-1]
    kv = await store.get(KEYS.gossip_key)
    assert kv is not None and KeyringRecord.read(kv.value).keys == (new,)
    for node in nodes:
        assert node.member.wire.keyring.keys == (new,)  # applied in place: the same member
        assert node.gossip.applied is not None and node.gossip.applied[0] == kv.mod_revision
    await asyncio.sleep(0.3)  # several probe periods on the new key alone
    for node in nodes:
        assert all(state(node.member, o.name) == "alive" for o in nodes)
        assert [c for c in node.changes if c.member.state.label != "alive"] == []
        assert node.member.stats()["dropped"]["unauthenticated"] == 0
    assert caplog.text.count("applied") == 9  # three versions on three members, logged
    assert fingerprint(new) in caplog.text and base64.b64encode(new).decode() not in caplog.text


async def test_a_member_on_another_key_is_unheard_so_the_check_above_means_something() -> None:
    net = MemoryNetwork(seed=2)
    a = GossipNode("a", net.transport(), Keyring([b"a" * 32]), CONFIG)
    await a.start()
    b = GossipNode("b", net.transport(), Keyring([b"a" * 32]), CONFIG, seeds=[a.address])
    await b.start()
    try:
        await until(lambda: state(a, "b") == "alive")
        b.set_keys([b"z" * 32])  # a switch nobody else applied: what the phases prevent
        await until(lambda: a.stats()["dropped"]["unauthenticated"] > 0)
        await until(lambda: state(a, "b") in ("suspect", "dead"))
        b.set_keys([b"z" * 32, b"a" * 32])  # b accepts a's key again but sends with its own
        a.set_keys([b"a" * 32, b"z" * 32])  # a accepts b's: both talk again
        await until(lambda: state(a, "b") == "alive" and state(b, "a") == "alive")
    finally:
        await a.stop(leave=False)
        await b.stop(leave=False)


async def test_a_member_that_starts_mid_rotation_reads_the_current_keyring(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    the_spec = spec(free_port())
    first = Node(the_spec, "n1", store)
    late = Node(the_spec, "n2", store)
    try:
        await first.start()
        old = await store.get(KEYS.gossip_key)
        assert old is not None
        new = b"N" * 32
        switched = KeyringRecord((new, *KeyringRecord.read(old.value).keys))
        await store.put(KEYS.gossip_key, switched.dump())  # phase 2, as n2 is down
        await until(lambda: first.member.wire.keyring.primary == new)
        await late.start()  # back in phase 2: it reads the record at start
        assert late.member.wire.keyring.keys == switched.keys
        await until(lambda: state(first.member, "n2") == "alive")
        await until(lambda: state(late.member, "n1") == "alive")
        await store.put(KEYS.gossip_key, KeyringRecord((new,)).dump())  # phase 3
        await until(lambda: late.member.wire.keyring.keys == (new,))
        applied = late.gossip.applied
        await store.put(KEYS.gossip_key, base64.b64encode(b"short") + b"\n")  # a bad edit
        await asyncio.sleep(0.1)
        assert late.member.wire.keyring.keys == (new,) and late.gossip.applied == applied
        assert "not applied: line 1: a key of 5 bytes" in caplog.text  # and not acknowledged
        await asyncio.sleep(0.2)
        assert state(first.member, "n2") == "alive" and state(late.member, "n1") == "alive"
        assert [c for c in first.changes + late.changes if c.member.state.label != "alive"] == []
    finally:
        await first.stop()
        await late.stop()


def test_a_keyring_is_replaced_whole_or_not_at_all() -> None:
    ring = Keyring([b"a" * 32])
    ring.replace([b"b" * 16, b"a" * 32])
    assert ring.keys == (b"b" * 16, b"a" * 32) and ring.version == 1
    ring.replace([b"b" * 16, b"a" * 32])
    assert ring.version == 1  # the same keys: the wire keeps its derived keys
    for bad in ([], [b"c" * 32, b"short"]):
        with pytest.raises(KeyringError):
            ring.replace(bad)
        assert ring.keys == (b"b" * 16, b"a" * 32)
