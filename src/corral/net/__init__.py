"""Gossip shells: wire codec, keyring, transports and the asyncio node.

Public API: :class:`GossipNode` and :class:`MemberStatus` (embed a member), :class:`Keyring`
and :func:`generate_key`, :class:`Wire` and :class:`Drops` (the envelope), :class:`Transport`,
:class:`UdpTransport`, :class:`MemoryNetwork` / :class:`MemoryTransport` (the in-memory twin).
The standalone runner is ``python -m corral.net.node``.
"""

from corral.net.gossip import GossipNode, MemberStatus
from corral.net.keyring import Keyring, KeyringError, generate_key
from corral.net.memory import MemoryNetwork, MemoryTransport
from corral.net.transport import Transport, TransportStats, UdpTransport, free_port
from corral.net.wire import Drops, Wire

__all__ = [
    "Drops",
    "GossipNode",
    "Keyring",
    "KeyringError",
    "MemberStatus",
    "MemoryNetwork",
    "MemoryTransport",
    "Transport",
    "TransportStats",
    "UdpTransport",
    "Wire",
    "free_port",
    "generate_key",
]
