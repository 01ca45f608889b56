"""Protocol messages: frozen dataclasses, no behaviour.

A :class:`Packet` is what one datagram (or one stream frame, for push-pull) carries: the sender's
name and one or more messages. The first message is the packet's purpose (a ping, an ack...); the
rest are piggybacked broadcasts (alive / suspect / dead claims).

:func:`estimated_size` is a conservative upper bound of a message's encoded size (msgpack, see
``corral.net.codec``); the core packs piggybacked broadcasts against it so that the codec never
has to cut a packet. A property test checks the bound against the real codec.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MemberState(enum.IntEnum):
    """A member's state as one node sees it. The integers are the wire encoding."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a member tells the cluster about itself; travels with every alive claim."""

    roles: tuple[str, ...] = ()
    site: str = ""
    api: str = ""
    """Address of the member's agent API (``host:port``), empty when it has none."""
    store: str = ""
    """The agent's word about the store (:mod:`corral.core.quorum`: a proof round's nonce, and
    how long its store member has been down), empty when it has none."""


NO_META = NodeMeta()


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. ``target`` is the name the sender believes lives at the address; a node with
    another name does not answer (the address was reused)."""

    seq: int
    target: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Indirect probe: please ping ``target`` at ``target_addr`` and relay its ack under ``seq``.
    With ``nack`` (Lifeguard) the helper answers :class:`Nack` if the target stays silent."""

    seq: int
    target: str
    target_addr: str
    nack: bool


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a :class:`Ping` (or relayed answer to a :class:`PingReq`) with the same seq."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard: a ping-req helper could reach us but not the target."""

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """Claim: ``name`` is alive at ``incarnation``, reachable at ``addr``, described by ``meta``."""

    name: str
    incarnation: int
    addr: str
    meta: NodeMeta


@dataclass(frozen=True, slots=True)
class Suspect:
    """Claim: ``accuser`` suspects ``name`` at ``incarnation``."""

    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Claim: ``accuser`` declares ``name`` dead at ``incarnation``. When ``accuser == name`` the
    member left gracefully."""

    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class MemberDigest:
    """One member's entry in a push-pull exchange."""

    name: str
    addr: str
    meta: NodeMeta
    incarnation: int
    state: MemberState


@dataclass(frozen=True, slots=True)
class PushPull:
    """Anti-entropy: the sender's whole table. ``join`` marks the first exchange of a joining
    node; ``reply`` marks the answer (which is never answered again)."""

    join: bool
    reply: bool
    members: tuple[MemberDigest, ...]


Claim = Alive | Suspect | Dead
Message = Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | PushPull


@dataclass(frozen=True, slots=True)
class Packet:
    """One datagram's worth of messages from ``sender``."""

    sender: str
    messages: tuple[Message, ...]


# msgpack: a str costs at most 5 header bytes, an int at most 9, an array header at most 5.
_STR = 5
_INT = 9
_ARR = 5


def _s(text: str) -> int:
    return _STR + len(text.encode("utf-8", "surrogatepass"))


def meta_size(meta: NodeMeta) -> int:
    """Upper bound of an encoded :class:`NodeMeta`."""
    return (
        _ARR + _ARR + sum(_s(r) for r in meta.roles) + _s(meta.site) + _s(meta.api) + _s(meta.store)
    )


def estimated_size(msg: Message) -> int:
    """Upper bound, in bytes, of ``msg`` encoded by the codec (array of a type code and fields)."""
    head = _ARR + _INT
    if isinstance(msg, Ping):
        return head + _INT + _s(msg.target)
    if isinstance(msg, Ack | Nack):
        return head + _INT
    if isinstance(msg, PingReq):
        return head + _INT + _s(msg.target) + _s(msg.target_addr) + 1
    if isinstance(msg, Alive):
        return head + _s(msg.name) + _INT + _s(msg.addr) + meta_size(msg.meta)
    if isinstance(msg, Suspect | Dead):
        return head + _s(msg.name) + _INT + _s(msg.accuser)
    body = sum(
        _ARR + _s(d.name) + _s(d.addr) + meta_size(d.meta) + _INT + _INT for d in msg.members
    )
    return head + 2 + _ARR + body


def packet_overhead(sender: str) -> int:
    """Upper bound of the packet envelope around the messages (sender name and array headers)."""
    return _ARR + _s(sender) + _ARR
