"""Fence devices with a password by reference: the agent's stdin carries it, nothing else does.

The fence agents here are real scripts speaking the fence-agents stdin protocol; the failing
one echoes its whole stdin on stderr, as a careless agent does on an error. The password must
reach that stdin, and appear in no error, event, log line, ``corral status`` or state dump.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from corral.core.scheduler import dump_state_text
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.fence import fence_node
from corral.records import snapshot_from_kvs
from corral.records.view import cluster_view
from corral.spec import load_spec_text
from corral.spec.model import FenceDevice
from corral.spec.secrets import SecretRef
from tests.controller.harness import World

PASSWORD = "hunter2-{not-a-template}"
TARGET = NodeContext("n2", "198.18.0.2", {"bmc": "10.0.0.2"})


def agent(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fence_test"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "ipmi.pw"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def device(tmp_path: Path, body: str) -> FenceDevice:
    ref = SecretRef(file=str(password_file(tmp_path)))
    params = {"ip": "{node.bmc}", "username": "admin", "password": ref}
    return FenceDevice(agent=str(agent(tmp_path, body)), params=params, action="off")


def test_the_password_reaches_the_agent_stdin_and_not_its_reported_output(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "stdin.txt"
    dev = device(tmp_path, f"tee {seen}; exit 0")  # echoes stdin on stdout too
    said = asyncio.run(fence_node(dev, TARGET))
    lines = seen.read_text().splitlines()
    assert lines == [
        "action=off",
        "plug=n2",
        "ip=10.0.0.2",
        "username=admin",
        f"password={PASSWORD}",
    ]
    assert "ip=10.0.0.2" in said and PASSWORD not in said and "hunter2" not in said


# a careless agent: its last words (the ones corral reports) quote its whole stdin
FAILING = (
    """printf 'Failed: plug is not available (request: %s)\\n' "$(tr '\\n' ' ')" >&2; exit 1"""
)


def test_a_failing_agent_that_echoes_its_stdin_leaks_nothing(tmp_path: Path) -> None:
    with pytest.raises(DriverError) as caught:
        asyncio.run(fence_node(device(tmp_path, "cat >&2; exit 1"), TARGET))
    assert "exited 1" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_secret_that_cannot_be_read_fails_the_fence_before_the_agent_runs(
    tmp_path: Path,
) -> None:
    ran = tmp_path / "ran"
    dev = device(tmp_path, f"touch {ran}")
    password_file(tmp_path).chmod(0o644)
    with pytest.raises(DriverError, match=r"secret fence parameter password: .* mode 0644"):
        asyncio.run(fence_node(dev, TARGET))
    assert not ran.exists()


SPEC = """\
cluster: t
nodes:
  n1: {{address: 198.18.0.1}}
  n2: {{address: 198.18.0.2, attrs: {{bmc: 10.0.0.2}}}}
  n3: {{address: 198.18.0.3}}
fencing:
  ipmi:
    agent: {agent}
    action: 'off'
    params: {{ip: "{{node.bmc}}", password: {{file: {secret}}}}}
resources:
  db: {{process: /bin/db, mode: active-passive}}
"""


class RealFence(World):
    """The controller transcripts' world, fencing through the real driver."""

    async def _fence(self, device: FenceDevice, target: NodeContext) -> None:
        await fence_node(device, target)


def test_a_failed_fence_leaks_nothing_into_events_logs_status_or_dump(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = SPEC.format(agent=agent(tmp_path, FAILING), secret=password_file(tmp_path))
    world = RealFence()
    try:
        world.spec = load_spec_text(text)
        world.deaths = {n: {} for n in world.spec.nodes}
        for command in (
            "register n1 n2 n3",
            "status n2 db healthy",
            "campaign n1",
            "step n1",
            "advance 1s",
            "gossip-dead n2",
            "step n1",
        ):
            world.execute(command)
        events = world.execute("show events")
        kvs = world.loop.run_until_complete(world.store.range(world.keys.root.encode())).kvs
    finally:
        world.close()
    assert "fencing n2 failed" in events and "plug is not available" in events
    view = json.dumps(cluster_view(world.spec, world.keys, kvs))
    dump = dump_state_text(snapshot_from_kvs(world.spec, world.keys, kvs, now=0.0))
    stored = b"".join(kv.value for kv in kvs).decode()
    for where, said in [
        ("events", events),
        ("log", caplog.text),
        ("status", view),
        ("dump", dump),
        ("store", stored),
    ]:
        assert "hunter2" not in said, f"the password is in the {where}"
