"""The shipped unit under a real systemd (PID 1 of its own namespaces, tests/drivers/
systemd_ns.py) running a real agent against a real etcd on loopback: READY=1 once registered,
a hung agent killed by the watchdog and started again, and ``systemctl restart corral``
leaving the managed service and the lease guard as they were (``KillMode=process``).

The unit is the one ``corral install-unit`` writes (:func:`render_unit`); a drop-in only points
it at this checkout, at writable places (the namespace's / is read-only), at a log file (no
journald runs there) and at a 4 s watchdog instead of 10 s (a shorter test)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral
from corral.agent.snapshot import STALL_FILE
from corral.cli.host import render_unit
from corral.store.lab import free_ports

from ..drivers.systemd_ns import SystemdNamespace, booted
from .etcd import eventually, running_etcd

BASE = Path("/run/corral-test")  # inside the namespace
STATE = BASE / "state"
ADDRESS = "127.0.0.61"
WATCHDOG = 4  # seconds (the shipped unit: 10)
SRC = Path(corral.__file__).resolve().parents[1]


def spec(etcd: str, gossip: int) -> str:
    return f"""
cluster: hosttest
profile: lan
store: {{etcd: {{endpoints: [{etcd}]}}}}
gossip: {{port: {gossip}}}
nodes:
  n1: {{address: {ADDRESS}}}
resources:
  sleeper:
    process: {{command: "/bin/sleep 100000", stop_timeout: 1s}}
"""


DROP_IN = f"""[Service]
Environment=PYTHONPATH={SRC}
StateDirectory=
ConfigurationDirectory=
WatchdogSec={WATCHDOG}s
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as url:
        yield url


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory, etcd: str) -> Iterator[SystemdNamespace]:
    with booted(tmp_path_factory.mktemp("systemd-ns")) as ns:
        base = ns.root / BASE.relative_to("/")
        base.mkdir(mode=0o700)
        (base / "spec.yaml").write_text(spec(etcd, free_ports(1)[0]))
        command = [sys.executable, "-m", "corral.cli.main"]
        units = ns.root / "run/systemd/system"
        (units / "corral.service").write_text(
            render_unit(command, "n1", BASE / "spec.yaml", STATE, etcd)
        )
        (units / "corral.service.d").mkdir()
        (units / "corral.service.d/test.conf").write_text(DROP_IN)
        ns.run("daemon-reload")
        ns.run("start", "systemd-journald.socket", "systemd-journald.service")
        ns.run("start", "--no-block", "corral.service")
        yield ns


def show(ns: SystemdNamespace) -> dict[str, str]:
    out = ns.run("show", "-p", "ActiveState,SubState,StatusText,MainPID,NRestarts", "corral")
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def in_ns(ns: SystemdNamespace, path: Path) -> Path:
    return ns.root / path.relative_to("/")


def pid_in(ns: SystemdNamespace, pidfile: Path) -> int:
    """A pid from the state dir (a number, or the process driver's JSON), as the namespace
    numbers it."""
    text = in_ns(ns, pidfile).read_text().strip()
    return int(json.loads(text)["pid"]) if text.startswith("{") else int(text)


def alive_in(ns: SystemdNamespace, pid: int) -> bool:
    return ns.sh(f"kill -0 {pid} 2>/dev/null && echo yes || echo no").stdout.strip() == "yes"


def registered(ns: SystemdNamespace) -> bool:
    state = show(ns)
    return state["ActiveState"] == "active" and state["StatusText"].startswith(
        "node n1: registered"
    )


def journal(ns: SystemdNamespace, *args: str) -> str:
    return ns.sh(f"journalctl --no-pager -u corral {' '.join(args)}").stdout


def agent_log(ns: SystemdNamespace) -> str:
    return journal(ns, "-o cat")[-20000:]


def test_ready_once_registered(sd: SystemdNamespace) -> None:
    eventually(lambda: show(sd)["ActiveState"] != "inactive", 10, "the unit starting")
    try:
        eventually(lambda: registered(sd), 40, "READY=1 and a registered status")
    except AssertionError:
        raise AssertionError(f"{show(sd)}\n{agent_log(sd)}") from None
    eventually(lambda: in_ns(sd, STATE / "run/sleeper.pid").exists(), 20, "the service started")
    assert "no lease" not in show(sd)["StatusText"]


def test_restart_leaves_service_and_guard(sd: SystemdNamespace) -> None:
    eventually(lambda: "1 service(s)" in show(sd)["StatusText"], 10, "the status refreshed")
    before = show(sd)
    service = pid_in(sd, STATE / "run/sleeper.pid")
    guard = pid_in(sd, STATE / "guard.pid")
    sd.run("restart", "corral.service")  # returns once the new agent sent READY=1
    after = show(sd)
    assert after["MainPID"] != before["MainPID"]
    assert after["ActiveState"] == "active"
    lease = before["StatusText"].split(", ")[1]  # "lease <id>": handed over, not a new one
    assert lease.startswith("lease ") and lease in after["StatusText"], (
        before,
        after,
        agent_log(sd),
    )
    assert pid_in(sd, STATE / "run/sleeper.pid") == service and alive_in(sd, service)
    assert pid_in(sd, STATE / "guard.pid") == guard and alive_in(sd, guard)
    eventually(lambda: registered(sd), 20, "registered again")


def test_watchdog_restarts_a_hung_agent(sd: SystemdNamespace) -> None:
    before = show(sd)
    service = pid_in(sd, STATE / "run/sleeper.pid")
    stall = in_ns(sd, STATE / STALL_FILE)  # the agent takes it and hangs for a minute
    stall.write_text("60\n")
    try:  # the hung agent is killed by the watchdog; the next one finds no file
        eventually(lambda: show(sd)["MainPID"] not in ("0", before["MainPID"]),
                   WATCHDOG + 15, "the watchdog killing the hung agent")  # fmt: skip
    finally:
        stall.unlink(missing_ok=True)
    eventually(lambda: registered(sd), 30, "the restarted agent registered")
    after = show(sd)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    log = agent_log(sd)  # systemd's SIGABRT: faulthandler wrote where the agent hung
    assert "Fatal Python error: Aborted" in log, log
    assert "in publish_turn" in log, log
    assert alive_in(sd, service)  # not exclusive: the hang and the restart left it running
    assert os.path.exists(in_ns(sd, STATE / "guard.pid"))


def test_logs_carry_node_and_resource_fields(sd: SystemdNamespace) -> None:
    entries = [json.loads(line) for line in journal(sd, "-o json CORRAL_NODE=n1").splitlines()]
    assert entries, agent_log(sd)
    assert all(e["CORRAL_CLUSTER"] == "hosttest" for e in entries)
    assert all(e["SYSLOG_IDENTIFIER"] == "corral" for e in entries)
    started = [e for e in entries if e.get("CORRAL_RESOURCE") == "sleeper"]
    messages = [e["MESSAGE"] for e in entries]
    assert any("started sleeper" in e["MESSAGE"] for e in started), messages
