"""Drivers: process, systemd, OCF (see base.py for the contract every driver keeps).

:func:`make_driver` is the one way the agent gets a driver for a resource instance on its node.
``vip`` and ``vip-set`` members get :class:`corral.drivers.vip.VipAddress`; ``haproxy`` is
driven by the agent's load-balancer sync, which knows the whole spec.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.drivers.base import Driver, DriverError, DriverStatus, NodeContext, NodeFault
from corral.drivers.ocf import OcfAgent
from corral.drivers.process import ProcessSupervisor
from corral.drivers.systemd import SystemdUnit
from corral.spec.model import Resource, Spec

__all__ = [
    "Driver",
    "DriverError",
    "DriverStatus",
    "NodeContext",
    "NodeFault",
    "OcfAgent",
    "ProcessSupervisor",
    "SystemdUnit",
    "make_driver",
]


def make_driver(
    name: str,
    res: Resource,
    node: NodeContext,
    item: str | None = None,
    *,
    systemctl: Sequence[str] = ("systemctl",),
    spec: Spec | None = None,
) -> Driver:
    """The driver for instance ``item`` (a vip-set member's IP, else None) of resource ``name``
    on ``node``; DriverError for a kind without one here (``haproxy``: see
    :mod:`corral.drivers.haproxy`, it needs the whole spec).

    ``systemctl`` is the command prefix of systemd drivers (tests reach a namespaced systemd
    with ``nsenter -t PID -m -p systemctl``). Creating a driver does no I/O: an OCF agent's
    meta-data is read at its first action. A ``galera`` member needs the whole ``spec`` (its
    peers, the timing profile); made here it has no store link: it can stop (the lease
    guard's self-fence) and report nothing (the agent makes its own with a link).
    """
    if res.process is not None:
        return ProcessSupervisor(name, res.process, node)
    if res.systemd is not None:
        return SystemdUnit(name, res.systemd, systemctl=systemctl)
    if res.ocf is not None:
        return OcfAgent(name, res.ocf, node)
    if res.vip is not None:
        from corral.drivers.vip import VipAddress

        return VipAddress(name, res.vip.address, node, interface=res.vip.interface)
    if res.vip_set is not None:
        from corral.drivers.vip import VipAddress

        address = next((a for a in res.vip_set.addresses if str(a.ip) == item), None)
        if address is None:
            raise DriverError(f"{name}: {item!r} is not one of the addresses of this vip-set")
        return VipAddress(f"{name}[{item}]", address, node, interface=res.vip_set.interface)
    if res.galera is not None:
        if spec is None:
            raise DriverError(f"{name}: a galera member needs the spec (its peers)")
        from corral.drivers.galera_member import galera_member

        return galera_member(name, res, node, spec)
    if res.rabbitmq is not None:
        if spec is None:
            raise DriverError(f"{name}: a rabbitmq member needs the spec (its timing)")
        from corral.drivers.rabbitmq_member import rabbit_member

        return rabbit_member(name, res, node, spec)
    raise DriverError(f"{name}: a {res.kind} resource is not driven by make_driver")
