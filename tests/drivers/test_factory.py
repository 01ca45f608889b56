"""make_driver: one driver per service kind and VIP kind; HAProxy is made by the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers import (
    DriverError,
    NodeContext,
    OcfAgent,
    ProcessSupervisor,
    SystemdUnit,
    make_driver,
)
from corral.spec.model import Resource


@pytest.fixture
def node(tmp_path: Path) -> NodeContext:
    return NodeContext("n1", "127.0.0.1", {"port": "8080"}, state_dir=tmp_path)


def test_service_kinds(node: NodeContext) -> None:
    proc = make_driver(
        "web", Resource.model_validate({"process": "serve --port {node.port}"}), node
    )
    assert isinstance(proc, ProcessSupervisor)
    assert proc.command == "serve --port 8080"
    assert proc.log_path == node.state_dir / "logs/web.log"
    assert proc.pid_path == node.state_dir / "run/web.pid"

    unit = make_driver(
        "api",
        Resource.model_validate({"systemd": "apache2.service"}),
        node,
        systemctl=("echo", "systemctl"),
    )
    assert isinstance(unit, SystemdUnit) and unit.unit == "apache2.service"
    assert unit.stop_timeout == 90.0

    ocf = make_driver(
        "d",
        Resource.model_validate(
            {
                "ocf": {
                    "agent": "heartbeat:Dummy",
                    "params": {"fake": "{node.name}", "n": 3, "b": True},
                }
            }
        ),
        node,
    )
    assert isinstance(ocf, OcfAgent)
    assert ocf.path == Path("/usr/lib/ocf/resource.d/heartbeat/Dummy")
    assert ocf.params == {"fake": "n1", "n": "3", "b": "true"}


def test_vip_kinds_get_a_vip_driver(node: NodeContext) -> None:
    from corral.drivers.vip import VipAddress

    vip = make_driver("v", Resource.model_validate({"vip": "198.18.0.100/24"}), node)
    assert isinstance(vip, VipAddress) and str(vip.ip) == "198.18.0.100"
    vset = Resource.model_validate({"vip-set": ["198.18.0.100/24", "198.18.0.101/24"]})
    member = make_driver("vs", vset, node, "198.18.0.101")
    assert isinstance(member, VipAddress) and str(member.ip) == "198.18.0.101"
    with pytest.raises(DriverError, match="not one of the addresses"):
        make_driver("vs", vset, node, "198.18.0.199")


def test_haproxy_is_not_made_here(node: NodeContext) -> None:
    res = Resource.model_validate({"haproxy": {}})
    with pytest.raises(DriverError, match="a haproxy resource is not driven by make_driver"):
        make_driver("lb", res, node)
