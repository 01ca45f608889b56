"""Galera's group-communication timeouts, derived from corral's timing profile (pure).

Why: when a member dies, the survivors cannot commit until the group communication (EVS)
drops it from the view, which happens ``evs.suspect_timeout`` (5 s by default, read at start
only) plus up to one ``evs.inactive_check_period`` after its last message. Through that stall
every write fails or hangs, whichever node HAProxy sends it to. Issue 16 point 3 offers two
ways: derive the ``evs.*`` timeouts from corral's profile, or evict the dead member
(``evs.evict``) once it is fenced. corral does **both, in two roles**:

- The derived timeouts always apply (:func:`provider_options`, passed at mariadbd's start):
  they bound the stall with no fence device, no store and no SQL connection needed at the
  worst moment, and they are the only bound when fencing is not configured or fails.
- The eviction is the fast path where fencing works (:func:`evict_option`): rule 2 lets
  corral act on a node as soon as its fence succeeded, which on a LAN comes well before the
  suspicion timeout; evicting a member that is certainly powered off loses nothing. It needs
  the dead member's gcomm UUID (the survivors' view lists it) and a survivor's SQL session
  (``SET GLOBAL wsrep_provider_options='evs.evict=<uuid>'``). :func:`evictions` says which
  members of a survivor's view to evict; every running member asks it at its status poll
  (:meth:`corral.drivers.galera_member.GaleraMember.status`). Measured here: a member killed
  -9 and evicted left the survivors' view in 0.2 s, against ``evs.suspect_timeout`` (5 s by
  default) without.

The formulas (``lease_ttl`` and ``safety_margin`` from :mod:`corral.spec.profiles`):

- ``evs.suspect_timeout = max(1 s, lease_ttl - safety_margin)``: the point at which an agent
  that cannot renew its lease stops its exclusive instances (rule 1). Galera suspects a member
  no sooner than corral itself gives up on a stalled node, so a stall that corral rides out
  (a busy host, an etcd leader election) does not evict a live member either; and no later,
  since by then corral has moved on. The floor keeps scheduling hiccups of a loaded 2-core
  host from evicting anything. lan: 2.25 s, local: 1.5 s, wan: 9 s (Galera's default: 5 s).
- ``evs.inactive_check_period = suspect / 10`` (Galera's default ratio 0.5 / 5): the
  suspicion lands at most 10 % after its timeout. Galera requires ``<= suspect / 2``.
- ``evs.keepalive_period = max(0.1 s, suspect / 5)`` (default ratio 1 / 5): an idle member
  still sends several messages per suspicion window, so one lost keepalive suspects nobody.
  Galera requires ``>= 0.1 s`` and ``<= suspect / 3``.
- ``evs.inactive_timeout = 3 x suspect`` (default ratio 15 / 5): the hard limit after which a
  member is dropped even without every member's agreement. Galera requires ``>= suspect``.
- ``evs.install_timeout = inactive / 2`` (Galera's own default formula): how long a view
  change may take. Galera requires ``2 x keepalive <= install <= inactive``.

- ``evs.join_retrans_period = max(0.1 s, suspect / 10)`` (Galera's default: 1 s): how often
  a member resends its join message while the members agree on a new view. Once a dead member
  is suspected or evicted, the survivors each send a join naming who they still see; when
  they sent theirs a moment apart (two agents' polls, one suspicion landing before the
  other's), they agree only at the next resend. Measured with the writer powered off and
  evicted (``bench/stateful.py``): the view changed ~1.0 s after the eviction with the
  default, in milliseconds with 0.2 s. It only paces view changes (no message is sent for
  it while the view is stable), and a member still leaves only by suspicion or eviction.

``gmcast.peer_timeout`` (3 s: a connection attempt to a peer) keeps its default: it paces
reconnection, not the detection of a dead member or the view change.

Every value is rounded to the millisecond and written as an ISO 8601 duration (``PT2.25S``),
the form Galera reads; :func:`violations` checks Galera's constraints on the rounded values
(the tests run it for every profile).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from corral.spec.profiles import Timing

SUSPECT_FLOOR = 1.0
KEEPALIVE_MIN = 0.1  # Galera's minimum evs.keepalive_period (and evs.suspect_timeout's: 0.1)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class EvsTimeouts:
    """The derived ``evs.*`` timeouts, in seconds (rounded to the millisecond)."""

    suspect_timeout: float
    inactive_check_period: float
    keepalive_period: float
    inactive_timeout: float
    install_timeout: float
    join_retrans_period: float = 1.0  # Galera's default, for a value made by hand

    def options(self) -> dict[str, str]:
        """``wsrep_provider_options`` entries, name -> ISO 8601 duration."""
        return {
            "evs.suspect_timeout": iso(self.suspect_timeout),
            "evs.inactive_check_period": iso(self.inactive_check_period),
            "evs.keepalive_period": iso(self.keepalive_period),
            "evs.inactive_timeout": iso(self.inactive_timeout),
            "evs.install_timeout": iso(self.install_timeout),
            "evs.join_retrans_period": iso(self.join_retrans_period),
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000) / 1000


def iso(seconds: float) -> str:
    """``seconds`` as the ISO 8601 duration Galera reads (``PT2.25S``)."""
    return f"PT{_ms(seconds):g}S"


def evs_timeouts(timing: Timing) -> EvsTimeouts:
    """The timeouts of the module docstring for ``timing``."""
    suspect = _ms(max(SUSPECT_FLOOR, timing.lease_ttl - timing.safety_margin))
    keepalive = _ms(max(KEEPALIVE_MIN, suspect / 5))
    inactive = _ms(3 * suspect)
    return EvsTimeouts(
        suspect_timeout=suspect,
        inactive_check_period=_ms(suspect / 10),
        keepalive_period=keepalive,
        inactive_timeout=inactive,
        install_timeout=_ms(inactive / 2),
        join_retrans_period=_ms(max(KEEPALIVE_MIN, suspect / 10)),
    )


def violations(t: EvsTimeouts) -> list[str]:
    """Galera's constraints between the timeouts (its EVS protocol refuses to start on any
    of them, ``ERANGE``), each broken one said; empty: Galera accepts them."""
    rules = [
        (t.suspect_timeout >= 0.1, "evs.suspect_timeout >= 0.1 s"),
        (t.inactive_timeout >= 0.1, "evs.inactive_timeout >= 0.1 s"),
        (t.inactive_timeout >= t.suspect_timeout, "evs.inactive_timeout >= evs.suspect_timeout"),
        (
            0 < t.inactive_check_period <= t.suspect_timeout / 2,
            "0 < evs.inactive_check_period <= evs.suspect_timeout / 2",
        ),
        (
            KEEPALIVE_MIN <= t.keepalive_period <= t.suspect_timeout / 3,
            "0.1 s <= evs.keepalive_period <= evs.suspect_timeout / 3",
        ),
        (t.join_retrans_period >= KEEPALIVE_MIN, "evs.join_retrans_period >= 0.1 s"),
        (
            2 * t.keepalive_period <= t.install_timeout <= t.inactive_timeout,
            "2 x evs.keepalive_period <= evs.install_timeout <= evs.inactive_timeout",
        ),
    ]
    return [f"{said} does not hold: {t}" for holds, said in rules if not holds]


def provider_options(timing: Timing, extra: dict[str, str] | None = None) -> str:
    """The ``wsrep_provider_options`` value: the derived timeouts, then ``extra`` entries
    (e.g. ``gcache.size``; an extra entry replaces a derived one of the same name)."""
    entries = {**evs_timeouts(timing).options(), **(extra or {})}
    for name, value in entries.items():
        if ";" in name or ";" in value or "=" in name:
            raise ValueError(f"wsrep_provider_options entry {name}={value}: no ';' or '=' in names")
    return ";".join(f"{name}={value}" for name, value in entries.items())


def evict_option(member_uuid: str) -> str:
    """``evs.evict=<uuid>``: what a survivor sets (``SET GLOBAL wsrep_provider_options=...``)
    to drop a fenced member at once (rule 2: only after its fence succeeded). ``member_uuid``
    is the member's gcomm UUID (its ``wsrep_gcomm_uuid``, as the survivors' view lists it)."""
    if not _UUID.match(member_uuid):
        raise ValueError(f"not a gcomm UUID: {member_uuid!r}")
    return f"evs.evict={member_uuid}"


def clear_option() -> str:
    """``evs.evict=`` (empty): what a member sets to empty its evict list."""
    return "evs.evict="


def evictions_over(listed: Collection[str], gone: Collection[str]) -> bool:
    """Whether a member empties its evict list now: the list holds uuids (``listed``: its
    server's ``wsrep_evs_evict_list``, evicted there or spread to it by another member) and
    no node is gone any more (every fenced node registered again: rebooted, so each evicted
    server is dead for good, rule 2, and each new server has a new uuid). While some node is
    still gone the list is kept whole (its uuids cannot be told apart here).

    Why: a Galera member that still lists an evicted uuid was seen, on real servers
    (``bench/stateful.py``), to ignore the next eviction: the view waited for the
    suspicion timeout instead (writes failing 3.0-3.4 s, not 1.0 s) in most power-offs after
    the first; with the lists emptied once the evicted node was back, every one took 1.0 s."""
    return bool(listed) and not gone


def evictions(
    view: Sequence[tuple[str, str]], gone: Collection[str], me: str, done: Collection[str] = ()
) -> list[tuple[str, str]]:
    """The members a survivor evicts now, as ``(node, uuid)`` in view order (safety rule 2:
    only a node whose fence succeeded and that has not registered again since, ``gone``).

    ``view``: ``(gcomm uuid, node name)`` of each member of this survivor's view (Galera's
    ``mysql.wsrep_cluster_members``; the node name is ``wsrep_node_name``, corral's node
    name); ``me``: this node, never evicted; ``done``: uuids already evicted (Galera keeps its
    evict list: once is enough). A uuid that is not one is skipped, never sent."""
    return [
        (node, uuid)
        for uuid, node in view
        if node in gone and node != me and uuid not in done and _UUID.match(uuid)
    ]
