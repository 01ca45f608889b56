"""``exec`` sinks: Pacemaker's own sample agent (``alert_file.sh.sample`` from Debian's
``pacemaker-common``) run unchanged with corral's environment, and an agent that hangs,
killed at its timeout with everything it started."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from corral.core import alerts as core
from corral.drivers.alert import run_alert_agent
from corral.drivers.base import DriverError

SAMPLE = Path("/usr/share/pacemaker/alerts/alert_file.sh.sample")
NODE_IDS = {"ctl1": 1, "ctl2": 2, "ctl3": 3}
EVENTS = [
    core.Facts("lease", "ctl3", "", "node lease lost (expired)", 1700000000.5),
    core.Facts("fence", "ctl1", "", "ctl2 fenced by ipmi (reboot, 0.40s): lost", 1700000001.0, "ctl2"),
    core.Facts("start", "ctl1", "web", "started web: assigned", 1700000002.125),
    core.Facts("health", "ctl1", "web", "web is unhealthy: HTTP 500", 1700000003.0),
]  # fmt: skip


@pytest.mark.skipif(not SAMPLE.exists(), reason="pacemaker-common not installed (make install)")
async def test_pacemakers_sample_agent_writes_its_lines(tmp_path: Path) -> None:
    out = tmp_path / "alerts.log"
    agent = tmp_path / "alert_file.sh"  # the sample as shipped, made executable
    agent.write_bytes(SAMPLE.read_bytes())
    agent.chmod(0o755)
    for seq, facts in enumerate(EVENTS, 1):
        alert = core.classify(facts)
        assert alert is not None
        env = core.crm_env(alert, str(out), seq, NODE_IDS, "0.1.0", facts.time + 0.1)
        await run_alert_agent(str(agent), env, timeout=10.0)
    assert out.read_text().splitlines() == [
        "22:13:20.500000: Node 'ctl3' is now 'lost'",
        "22:13:21.000000: Fencing ctl2 fenced by ipmi (reboot, 0.40s): lost",
        "22:13:22.125000: Resource operation 'start' for 'web' on 'ctl1': ok",
        "22:13:23.000000: Resource operation 'monitor' for 'web' on 'ctl1': not running",
    ]


async def test_a_failing_agent_is_a_failed_try(tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text('#!/bin/sh\necho "no mail server for $CRM_alert_kind" >&2\nexit 3\n')
    script.chmod(0o755)
    with pytest.raises(DriverError, match="exited 3: no mail server for node"):
        await run_alert_agent(str(script), {"CRM_alert_kind": "node"}, timeout=10.0)
    with pytest.raises(DriverError, match="cannot run"):
        await run_alert_agent(str(tmp_path / "missing"), {}, timeout=10.0)


async def test_a_hanging_agent_is_killed_at_its_timeout_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nwait\n")
    script.chmod(0o755)
    began = time.monotonic()
    with pytest.raises(DriverError, match=r"did not finish within 0\.5s and was killed"):
        await run_alert_agent(str(script), {}, timeout=0.5)
    assert time.monotonic() - began < 10.0  # killed, not waited for (300 s)
    for pid in map(int, pids.read_text().split()):
        for _ in range(100):  # reaped by then or gone; the sleeping child too
            if not _alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not _alive(pid), f"process {pid} outlived its agent's timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"
