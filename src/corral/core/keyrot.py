"""Gossip key rotation, decided (pure): which phase the store is in and what to write next.

Keys are named by their fingerprints here (the shell maps them back to keys). A rotation from
the keys ``old`` to the key ``new`` goes through three writes of the keyring record, each only
once every live member acknowledged the keyring version before it (:func:`laggards`):

=========== ========================= =====================================================
phase after keyring (primary first)   why every member still talks
=========== ========================= =====================================================
``added``   ``old..., new``           everyone still sends with the old primary; the new
                                      key is only accepted
``switched`` ``new, old...``          every member applied ``added``, so it reads ``new``;
                                      laggards still send with ``old``, which all accept
``retired`` ``new``                   every member applied ``switched``: nobody sends with
                                      ``old`` any more
=========== ========================= =====================================================

then the rotation record is marked finished (``idle``). A run that stops (a timeout, an
interrupted command) leaves one of these states, and the next run goes on from it: the phase
is read from the keyring and the rotation record, never remembered by the command.

Which members must acknowledge (:func:`required`): every registered node and every node any
member's published gossip view holds alive or suspect. A member that gossips without a
registration (its lease ran out, it cannot reach the store) cannot follow the keyring, so it
blocks the rotation rather than being cut off by it: a member that cannot read its peers'
packets would look dead to them, a false death (and, for the controller, a node to fence).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

Phase = Literal["idle", "added", "switched", "retired", "broken"]
Action = Literal["add", "use", "remove", "finish", "refuse"]
LIVE_STATES = ("alive", "suspect")


@dataclass(frozen=True)
class Rotation:
    """The rotation the store records: to ``new`` from ``old`` (fingerprints)."""

    new: str
    old: tuple[str, ...]
    finished: bool = False


@dataclass(frozen=True)
class Step:
    """What to write next: the keyring (fingerprints, primary first) and the rotation record;
    ``refuse``: nothing, for ``why``."""

    action: Action
    keys: tuple[str, ...] = ()
    rotation: Rotation | None = None
    why: str = ""


PHASE_NUMBER = {"add": 1, "use": 2, "remove": 3}
LEFT_IN = {
    "idle": "nothing was changed",
    "added": "every member still sends with the old key and accepts the new one where it "
    "applied it: everyone talks",
    "switched": "members that applied the switch send with the new key, the others with the "
    "old one, and every member accepts both: everyone talks",
    "retired": "the old key is out of the record; a member that has not applied it yet still "
    "accepts it too, which costs nothing: everyone talks",
    "broken": "nothing was changed",
}


def phase(keys: tuple[str, ...], rotation: Rotation | None) -> tuple[Phase, str]:
    """The phase the store is in, and for ``broken`` why (a keyring edited by hand during a
    rotation)."""
    if rotation is None or rotation.finished:
        return "idle", ""
    if rotation.new not in keys:
        return "broken", (
            f"the rotation to key {rotation.new} is under way but the keyring no longer holds "
            "that key (edited by hand?)"
        )
    if keys[0] != rotation.new:
        return "added", ""
    return ("switched", "") if len(keys) > 1 else ("retired", "")


def next_step(keys: tuple[str, ...], rotation: Rotation | None, fresh: str) -> Step:
    """The write that takes the rotation one phase on; ``fresh``: the fingerprint of a new
    key, used only when no rotation is under way. The old keys are all the keys but the new
    one: a rotation ends with exactly one key."""
    now, why = phase(keys, rotation)
    if now == "broken":
        return Step("refuse", why=why)
    if now == "idle":
        if fresh in keys:
            return Step("refuse", why=f"the new key {fresh} is in the keyring already")
        return Step("add", (*keys, fresh), Rotation(fresh, keys))
    assert rotation is not None
    new = rotation.new
    if now == "added":
        return Step("use", (new, *(k for k in keys if k != new)), rotation)
    if now == "switched":
        return Step("remove", (new,), rotation)
    return Step("finish", keys, replace(rotation, finished=True))


def required(registered: Iterable[str], views: Mapping[str, Iterable[tuple[str, str]]]) -> set[str]:
    """The members that must acknowledge: registered nodes, and every name a published view
    (reporter -> ``(name, state)`` rows) holds alive or suspect."""
    out = set(registered)
    for rows in views.values():
        out.update(name for name, state in rows if state in LIVE_STATES)
    return out


def laggards(revision: int, acks: Mapping[str, int], members: Iterable[str]) -> list[str]:
    """The ``members`` that have not acknowledged keyring ``revision`` (or a later one)."""
    return sorted(m for m in members if acks.get(m, 0) < revision)


def stopped_text(now: Phase, late: list[str], revision: int, waited: float) -> str:
    """What an operator reads when members did not acknowledge in time."""
    return (
        f"{', '.join(late)} did not apply keyring revision {revision} within {waited:g}s "
        f"(its agent down, cut off from the store, or older than key acknowledgements). "
        f"Stopped in phase {now!r}: {LEFT_IN[now]}. Run `corral keys rotate` again to go on."
    )
