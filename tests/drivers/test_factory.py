"""make_driver: one driver per service kind, a clear refusal for the network kinds."""

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


@pytest.mark.parametrize(
    "spec",
    [
        {"vip": "198.18.0.100/24"},
        {"vip-set": ["198.18.0.100/24", "198.18.0.101/24"]},
        {"haproxy": {}},
    ],
)
def test_network_kinds_are_not_ours(node: NodeContext, spec: dict[str, object]) -> None:
    res = Resource.model_validate(spec)
    with pytest.raises(DriverError, match=f"a {res.kind} resource is not driven by"):
        make_driver("net", res, node)
