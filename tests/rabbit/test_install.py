"""The rabbitmq-server package leaves no host service behind (``make server-packages``):
its units are masked, and no broker of the host runs outside corral's own namespaces."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

UNITS = ("rabbitmq-server.service", "epmd.service", "epmd.socket")
pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
    reason="rabbitmq-server is not installed (make server-packages)",
)


@pytest.mark.parametrize("unit", UNITS)
def test_the_units_are_masked(unit: str) -> None:
    path = Path("/etc/systemd/system") / unit
    assert path.is_symlink() and os.readlink(path) == "/dev/null", (
        f"{unit} is not masked: a real Debian would run a host broker or epmd"
    )


def test_no_host_broker_runs() -> None:
    """A beam.smp or epmd outside every network namespace corral made would be the host's
    (the package's service) or a leftover of ours: neither may run."""
    host_ns = os.readlink("/proc/self/ns/net")  # the tests run in the host namespace
    wrong = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["name"] not in ("beam.smp", "epmd"):
            continue
        try:
            if os.readlink(f"/proc/{proc.info['pid']}/ns/net") == host_ns:
                wrong.append(f"{proc.info['pid']} {proc.info['name']}")
        except OSError:
            continue
    assert not wrong, f"RabbitMQ processes in the host's namespace: {wrong}"
