"""Drivers: process, systemd, OCF (see base.py for the contract every driver keeps).

:func:`make_driver` is the one way the agent gets a driver for a resource instance on its node.
The ``vip``, ``vip-set`` and ``haproxy`` kinds are network resources with drivers of their own
(not here): asking this factory for one raises :class:`DriverError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.drivers.base import Driver, DriverError, DriverStatus, NodeContext
from corral.drivers.ocf import OcfAgent
from corral.drivers.process import ProcessSupervisor
from corral.drivers.systemd import SystemdUnit
from corral.spec.model import Resource

__all__ = [
    "Driver",
    "DriverError",
    "DriverStatus",
    "NodeContext",
    "OcfAgent",
    "ProcessSupervisor",
    "SystemdUnit",
    "make_driver",
]


def make_driver(
    name: str,
    res: Resource,
    node: NodeContext,
    *,
    systemctl: Sequence[str] = ("systemctl",),
) -> Driver:
    """The driver for resource ``name`` on ``node``; DriverError for a kind without one here.

    ``systemctl`` is the command prefix of systemd drivers (tests reach a namespaced systemd
    with ``nsenter -t PID -m -p systemctl``). Creating a driver does no I/O: an OCF agent's
    meta-data is read at its first action.
    """
    if res.process is not None:
        return ProcessSupervisor(name, res.process, node)
    if res.systemd is not None:
        return SystemdUnit(name, res.systemd, systemctl=systemctl)
    if res.ocf is not None:
        return OcfAgent(name, res.ocf, node)
    raise DriverError(
        f"{name}: a {res.kind} resource is not driven by the process/systemd/ocf drivers"
    )
