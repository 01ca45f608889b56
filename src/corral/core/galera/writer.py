"""The one Galera node HAProxy sends writes to (pure).

Galera accepts writes on every node, but writes to two nodes at once conflict at commit
(certification failures, deadlock errors to clients), so the OpenStack HA guide sends them to
one node and keeps the others ``backup``. corral keeps that node in one store record
(``galera/<resource>/writer``, :mod:`corral.records.galera`, written by the controller) that
every HAProxy follows, so two LB nodes never send writes to different nodes.

:func:`choose_writer` is what the controller writes there. Its contract:

- **Stable**: the writer stays while it is ready and not stopping, whatever else changes; a
  node that comes back (the old writer included) does not take the role back: no flapping,
  every move costs clients an error.
- **Moves only on loss or planned stop**: when the writer is not ready (lost, not Synced, not
  in a Primary component, failing its check) or is stopping (a planned stop, standby,
  maintenance move: the caller says), it moves to the first ready node that is not stopping,
  in spec order (deterministic: every controller picks the same one from the same inputs).
- A stopping writer with no other ready node stays (writes keep working until it stops);
  with no ready node at all the record is left as it is (changed False): writes fail until a
  node is ready, and nothing is written in between.
- ``ready`` means Synced (``wsrep_local_state`` 4), in a Primary component and healthy: a
  donor or a non-Primary node is not ready for clients.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WriterChoice:
    node: str | None  # None: there has never been one and no node is ready
    changed: bool  # write the record (and say it in an event)
    reason: str


def choose_writer(
    current: str | None,
    nodes: Sequence[str],
    ready: Collection[str],
    stopping: Collection[str] = (),
) -> WriterChoice:
    """The writer after ``current`` (the record's node, None when there is none), given the
    resource's ``nodes`` in spec order, those that are ``ready`` and those ``stopping``."""
    usable = [n for n in nodes if n in ready]
    if current is not None and current in usable and current not in stopping:
        return WriterChoice(current, False, f"{current} stays the writer (ready)")
    fresh = [n for n in usable if n not in stopping]
    if current is not None and current in usable and not fresh:
        return WriterChoice(
            current, False, f"{current} is stopping but no other node is ready: it stays"
        )
    if not usable:
        said = f"; the record keeps {current}" if current is not None else ""
        return WriterChoice(current, False, f"no node is ready: writes fail until one is{said}")
    chosen = (fresh or usable)[0]
    if current is None:
        why = "there was no writer"
    elif current in stopping:
        why = f"{current} is stopping"
    else:
        why = f"{current} is not ready"
    return WriterChoice(chosen, True, f"{chosen} becomes the writer: {why}")
