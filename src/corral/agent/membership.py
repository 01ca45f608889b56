"""Gossip beside the etcd session (shell): the agent's SWIM member.

Contract:
- The cluster's keyring lives in the store (``gossip-key``), created once with a
  compare-and-swap by the first agent; every agent reads it before it joins, then follows it
  (:meth:`AgentGossip.follow`, fed by the agent's watch): a new keyring record is applied to
  the running member at once, no restart, and the version applied (the record's mod revision)
  is acknowledged as ``keys/ack/<node>`` under the node's lease at the next publish, which is
  what ``corral keys rotate`` waits for. A record that does not read is not applied (and so
  not acknowledged: the rotation stops, naming this node). No key is ever logged.
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
import logging

from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.membership.effects import MemberChanged
from corral.core.membership.messages import NodeMeta
from corral.net.gossip import GossipNode
from corral.net.keyring import Keyring, KeyringError, generate_key
from corral.records import KeyAckRecord, KeyringRecord, Malformed, MemberRow, MembersRecord
from corral.spec import Spec
from corral.store import Compare, Keys, KeyValue, Put, Store

log = logging.getLogger(__name__)


async def cluster_keyring(store: Store, keys: Keys) -> tuple[KeyringRecord, int]:
    """The cluster's gossip keyring and its version (mod revision), created in the store if
    it is not there yet. :class:`~corral.records.Malformed` (a ``ValueError``) when the
    record does not read."""
    await store.txn(
        [Compare.missing(keys.gossip_key)], [Put(keys.gossip_key, generate_key().encode())]
    )
    kv = await store.get(keys.gossip_key)
    if kv is None:
        raise RuntimeError("the gossip key vanished from the store")
    try:
        return KeyringRecord.read(kv.value), kv.mod_revision
    except Malformed as exc:
        raise Malformed(f"the store's gossip-key: {exc.reason}") from None


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
        self._latest: KeyValue | None = None  # the newest keyring record the watch saw
        self.applied: tuple[int, tuple[str, ...]] | None = None  # keyring version, fingerprints
        self._acked: tuple[int, tuple[str, ...]] | None = None

    async def start(self) -> bool:
        """Start the member once (concurrent calls wait for the first); True when this call
        started it. On failure nothing stays bound and the next call tries again."""
        async with self._lock:
            if self.member is not None:
                return False
            await self._start()
            return True

    async def _start(self) -> None:
        record, revision = await cluster_keyring(self.store, self.keys)
        keyring = Keyring(list(record.keys))
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
        self.applied = (revision, record.fingerprints)
        if self._latest is not None:  # the watch saw a newer one while the member started
            self.follow(self._latest)

    def follow(self, kv: KeyValue | None) -> None:
        """The keyring record as the watch saw it (None: absent): applied to the running
        member when newer than what it runs; before the member runs, kept for its start."""
        if kv is None:
            return
        if self._latest is None or kv.mod_revision > self._latest.mod_revision:
            self._latest = kv
        if self.member is None or self.applied is None or kv.mod_revision <= self.applied[0]:
            return
        try:
            record = KeyringRecord.read(kv.value)
            self.member.set_keys(record.keys)
        except (Malformed, KeyringError) as exc:  # reasons name lines, never key material
            log.warning("gossip keyring revision %d not applied: %s", kv.mod_revision, exc)
            return
        self.applied = (kv.mod_revision, record.fingerprints)
        log.info("gossip keyring revision %d applied (%s)", kv.mod_revision, record)

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
        """A new lease: write the view and the keyring acknowledgement again at the next
        publish."""
        self._published = None
        self._acked = None

    async def publish(self, lease: int | None) -> None:
        """Write this node's view and the keyring version it runs under its lease when they
        changed."""
        if lease is None or self.member is None:
            return
        applied = self.applied
        if applied is not None and applied != self._acked:
            ack = KeyAckRecord(applied[0], applied[1])
            await self.store.put(self.keys.key_ack(self.node), ack.dump(), lease=lease)
            self._acked = applied
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
