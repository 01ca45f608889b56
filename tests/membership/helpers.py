"""Small builders for driving one core by hand."""

from __future__ import annotations

import random

from corral.core.membership import (
    Effect,
    Member,
    MemberChanged,
    Membership,
    MembershipConfig,
    MemberState,
    Message,
    NodeMeta,
    Packet,
    Send,
    profile,
)


def core(
    name: str = "a",
    peers: tuple[str, ...] = ("b", "c", "d", "e", "f"),
    config: MembershipConfig | None = None,
    now: float = 0.0,
    seed: int = 1,
) -> Membership:
    """A core named ``name`` (address ``name``) that already knows ``peers`` as alive."""
    m = Membership(name, name, config or profile("lan"), random.Random(seed), now)
    m.preload({p: Member(p, p, NodeMeta(), 0, MemberState.ALIVE, now) for p in peers})
    return m


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def changes(effects: list[Effect]) -> list[MemberChanged]:
    return [e for e in effects if isinstance(e, MemberChanged)]


def messages(effects: list[Effect], kind: type[Message], to: str | None = None) -> list[Message]:
    """Every message of ``kind`` sent (optionally to address ``to``), piggybacked ones too."""
    return [
        m
        for s in sends(effects)
        if to is None or s.addr == to
        for m in s.packet.messages
        if isinstance(m, kind)
    ]


def primary(effects: list[Effect], kind: type[Message]) -> list[tuple[str, Message]]:
    """``(address, message)`` for each sent packet whose *first* message is a ``kind``."""
    return [
        (s.addr, s.packet.messages[0])
        for s in sends(effects)
        if s.packet.messages and isinstance(s.packet.messages[0], kind)
    ]


def packet(sender: str, *msgs: Message) -> Packet:
    return Packet(sender, tuple(msgs))


def run_until(m: Membership, end: float, step: float = 0.001) -> list[Effect]:
    """Tick ``m`` every ``step`` seconds up to ``end`` (no packets delivered)."""
    out: list[Effect] = []
    t = 0.0
    while t <= end:
        out += m.tick(t)
        t = round(t + step, 6)
    return out
