"""Gossip beside the etcd session (shell): the agent's SWIM member.

Contract:
- The cluster's keyring lives in the store (``gossip-key``), created once with a
  compare-and-swap by the first agent; every agent reads it before it joins.
- The member binds ``<node address>:<gossip.port>`` and joins through the other nodes of the
  spec. Its view is published as ``members/<node>`` under the node's lease whenever it changes,
  for ``corral members``.
- :meth:`AgentGossip.lost` is the set of nodes this agent's view holds dead or left: the
  controller marks such a node ``unclean`` while its lease still lives (DESIGN.md: gossip
  detects in well under a second; takeover of exclusive instances still waits for the lease
  or a fence, rules 1-2).
"""

from __future__ import annotations

import asyncio
import base64
import logging

from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.membership.effects import MemberChanged
from corral.core.membership.messages import NodeMeta
from corral.net.gossip import GossipNode
from corral.net.keyring import Keyring, generate_key
from corral.records import MemberRow, MembersRecord
from corral.spec import Spec
from corral.store import Compare, Keys, Put, Store

log = logging.getLogger(__name__)


async def cluster_keyring(store: Store, keys: Keys) -> Keyring:
    """The cluster's gossip keyring, created in the store if it is not there yet."""
    await store.txn(
        [Compare.missing(keys.gossip_key)], [Put(keys.gossip_key, generate_key().encode())]
    )
    kv = await store.get(keys.gossip_key)
    if kv is None:
        raise RuntimeError("the gossip key vanished from the store")
    lines = [ln.strip() for ln in kv.value.decode().splitlines() if ln.strip()]
    return Keyring([base64.b64decode(line) for line in lines])


class AgentGossip:
    def __init__(
        self, spec: Spec, node: str, store: Store, keys: Keys, clock: Clock | None = None
    ) -> None:
        self.clock = clock or MonotonicClock()
        self.spec, self.node, self.store, self.keys = spec, node, store, keys
        self.member: GossipNode | None = None
        self._lock = asyncio.Lock()
        self._dead_at: dict[str, float] = {}
        self._published: bytes | None = None

    async def start(self) -> bool:
        """Start the member once (concurrent calls wait for the first); True when this call
        started it. On failure nothing stays bound and the next call tries again."""
        async with self._lock:
            if self.member is not None:
                return False
            await self._start()
            return True

    async def _start(self) -> None:
        keyring = await cluster_keyring(self.store, self.keys)
        port = self.spec.gossip.port
        me = self.spec.nodes[self.node]
        seeds = [f"{n.address}:{port}" for name, n in self.spec.nodes.items() if name != self.node]
        member = GossipNode.udp(
            self.node,
            f"{me.address}:{port}",
            keyring,
            self.spec.effective_gossip,
            seeds=seeds,
            meta=NodeMeta(roles=tuple(me.roles), site=me.site or ""),
        )
        try:
            await member.start()
        except BaseException:
            await member.transport.close()
            raise
        member.subscribe(self._note)
        self.member = member  # only once started: lost() and view() read a running member

    def _note(self, change: MemberChanged) -> None:
        # "left" is a graceful stop (an agent restart, a shutdown): its lease decides, and the
        # lease guard stops what it ran; only a death makes a node unclean
        if change.member.state.label == "dead":
            self._dead_at.setdefault(change.member.name, self.clock.now())
        else:
            self._dead_at.pop(change.member.name, None)

    def deaths(self) -> dict[str, float]:
        """Nodes of the spec this member holds dead -> when it came to hold so
        (CLOCK_MONOTONIC). A death older than a node's current registration is about that
        node's previous life (it rebooted and has not refuted yet): callers compare."""
        lost = self.lost()
        return {n: t for n, t in self._dead_at.items() if n in lost}

    def lost(self) -> set[str]:
        """Nodes of the spec this member holds dead or left."""
        if self.member is None:
            return set()
        return {
            m.name
            for m in self.member.members()
            if m.state in ("dead", "left") and m.name in self.spec.nodes
        }

    def view(self) -> list[MemberRow]:
        if self.member is None:
            return []
        return [
            MemberRow(
                m.name,
                m.state,
                m.incarnation,
                round(m.last_seen, 3) if m.last_seen is not None else None,
            )
            for m in self.member.members()
        ]

    def republish(self) -> None:
        """A new lease: write the view again at the next publish."""
        self._published = None

    async def publish(self, lease: int | None) -> None:
        """Write this node's view under its lease when it changed."""
        if lease is None or self.member is None:
            return
        view = self.view()
        marker = repr([(m.name, m.state, m.incarnation) for m in view]).encode()
        if marker != self._published:  # last_seen alone changing is not worth a write
            record = MembersRecord(tuple(view))
            await self.store.put(self.keys.members(self.node), record.dump(), lease=lease)
            self._published = marker

    async def stop(self) -> None:
        if self.member is not None:
            await self.member.stop(leave=True, grace=0.5)

    def store_words(self) -> dict[str, str]:
        """Every other live member's word about the store (``NodeMeta.store``), by node."""
        if self.member is None:
            return {}
        return {
            m.name: m.meta.store
            for m in self.member.members()
            if not m.is_self and m.state in ("alive", "suspect") and m.name in self.spec.nodes
        }

    def say_store(self, word: str) -> bool:
        """Publish this agent's word about the store (a new incarnation of its metadata);
        False when the member is not running yet."""
        if self.member is None:
            return False
        me = self.spec.nodes[self.node]
        self.member.update_meta(NodeMeta(tuple(me.roles), me.site or "", "", word))
        return True
