"""The driver interface: how the agent starts, stops and inspects one resource instance.

A driver is a thin shell around a service manager (corral's own process supervisor, systemd,
an OCF agent). Contract:

- ``start()`` returns once the service manager reports the instance started (not necessarily
  healthy: health checks decide that). It raises :class:`DriverError` with a readable reason
  when the start fails; the instance is then stopped or failed, never half-started and ignored.
  :class:`NodeFault` (a DriverError) says the start failed for a reason outside the resource.
- ``stop()`` stops gracefully, forces after the driver's stop timeout, and is idempotent (stopping
  a stopped instance succeeds).
- ``status()`` is cheap and never raises for a missing service: it reports ``stopped``.
  ``failed`` means the manager knows it died (a non-zero exit, a failed unit, OCF rc 1-6).
- ``adopt()`` is called once when the agent starts: it returns True when an instance this driver
  manages is already running (left by a previous agent), so that the agent adopts it instead
  of restarting it.
- ``promote()`` / ``demote()`` exist for promotable resources; drivers without roles raise
  :class:`DriverError`.
Every driver is created by :func:`corral.drivers.make_driver` from the resource's spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from corral.core.node import DriverError, NodeContext

__all__ = ["Driver", "DriverError", "DriverStatus", "NodeContext", "NodeFault"]


class NodeFault(DriverError):
    """The action failed because of another node, not of the resource: a VIP that another
    host still answers for (its old holder, not yet gone from the wire, or a frozen node whose
    kernel still answers ARP). The agent does not count it against the resource (DESIGN.md
    rule 7: a node's event is not the resource's failure) and tries again soon. A fault of
    this node's own parts (a NIC down) is a plain DriverError: counted, so that the resource
    moves to a node where it can run."""


@dataclass(frozen=True)
class DriverStatus:
    """``joined``: the instance runs as a member of a quorum of its own that it did not
    create (a Galera member in a Primary component it joined: safety rule 1g,
    :mod:`corral.core.galera.hold`); the agent's core heeds it for Galera resources only."""

    state: Literal["running", "stopped", "failed"]
    detail: str = ""
    promoted: bool = False
    joined: bool = False


class Driver(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def status(self) -> DriverStatus: ...

    async def adopt(self) -> bool: ...

    async def promote(self) -> None: ...

    async def demote(self) -> None: ...
