"""The README's "Running a cluster" steps, as written, on one node: a real systemd (PID 1 of
its own namespaces) whose /etc and /var/lib are writable overlays of the host's (the host's
files are never written), the embedded store over TLS from ``corral ca init``'s bundle.

What differs from the README: one node instead of three (its etcd member is a majority alone),
a loopback address, corral run from this checkout (a drop-in sets ``PYTHONPATH``; the unit's
``ExecStart=`` is the one ``corral install-unit`` writes), and no failover (one node)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral

from ..drivers.systemd_ns import SystemdNamespace, booted
from .etcd import eventually

SRC = Path(corral.__file__).resolve().parents[1]
ADDRESS = "127.0.0.62"
OVERLAYS = """
for d in etc var/lib; do
  mkdir -p /run/ov/$d/up /run/ov/$d/work
  mount -t overlay overlay -o lowerdir=/$d,upperdir=/run/ov/$d/up,workdir=/run/ov/$d/work /$d
done
"""
RESOURCE = """  sleeper:
    process: {command: "/bin/sleep 100000", stop_timeout: 1s}
"""


def corral_in(ns: SystemdNamespace, *args: str, check: bool = True) -> str:
    """``corral ARGS`` inside the namespace (its mounts, pids and host name), as root."""
    command = ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "corral.cli.main", *args]
    done = subprocess.run(
        ["nsenter", "-t", str(ns.pid), "-m", "-p", "-u", *command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"corral {shlex.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdNamespace]:
    with booted(tmp_path_factory.mktemp("systemd-ns")) as ns:
        ns.sh(OVERLAYS)
        subprocess.run(["nsenter", "-t", str(ns.pid), "-u", "hostname", "ctl1"], check=True)
        ns.run("start", "systemd-journald.socket", "systemd-journald.service")
        yield ns


def test_the_steps_as_written(node: SystemdNamespace) -> None:
    out = corral_in(node, "init", "--cluster", "cloud1", "--node", f"ctl1={ADDRESS}",
                    "--role", "controller", "--role", "lb")  # fmt: skip
    assert "/etc/corral/spec.yaml: written" in out
    assert "written" in corral_in(
        node, "ca", "init", "--out", "/etc/corral/ca", "--cluster", "cloud1"
    )
    spec = node.root / "etc/corral/spec.yaml"
    spec.write_text(spec.read_text().replace("resources: {}\n", "resources:\n" + RESOURCE))
    assert "valid" in corral_in(node, "validate", "/etc/corral/spec.yaml")
    assert "daemon-reload: done" in corral_in(node, "install-unit")
    dropin = node.root / "etc/systemd/system/corral.service.d"
    dropin.mkdir(parents=True)
    (dropin / "checkout.conf").write_text(f"[Service]\nEnvironment=PYTHONPATH={SRC}\n")
    node.run("daemon-reload")
    node.run("enable", "--now", "corral")  # returns once READY=1: registered in the store
    status = node.run("show", "-p", "ActiveState,StatusText", "corral").stdout
    assert "ActiveState=active" in status and "node ctl1: registered" in status, status

    def running() -> bool:
        shown = corral_in(node, "status", "--spec", "/etc/corral/spec.yaml", check=False)
        return "ctl1 online" in shown and "ctl1 healthy" in shown

    try:
        eventually(running, 30, "corral status showing the sleeper running on ctl1")
    except AssertionError:
        shown = corral_in(node, "status", "--spec", "/etc/corral/spec.yaml", check=False)
        raise AssertionError(shown) from None
    assert "corral.service" in node.sh("ls /etc/systemd/system/multi-user.target.wants").stdout


def test_report_from_the_node(node: SystemdNamespace) -> None:
    out = corral_in(node, "report", "--spec", "/etc/corral/spec.yaml", "--remote", "",
                    "-o", "/run/report.tar.gz")  # fmt: skip
    assert "/run/report.tar.gz" in out
    with tarfile.open(node.root / "run/report.tar.gz") as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
        readme = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("README")
                                      or m.name.endswith("README.txt")))  # fmt: skip
        assert readme is not None
        notes = readme.read().decode()
    assert {"events.jsonl", "state.yaml", "status.json", "logs/ctl1.journal.txt"} <= names, notes


def test_restart_keeps_the_etcd_member_and_services(node: SystemdNamespace) -> None:
    def pids() -> tuple[str, str, str]:  # the namespace's pids: nothing else is seen there
        etcd = node.sh("pgrep -x etcd || true").stdout.split()
        sleeper = node.sh("pgrep -x sleep || true").stdout.split()
        guard = (node.root / "var/lib/corral/guard.pid").read_text().split()
        return " ".join(etcd), " ".join(sleeper), " ".join(guard)

    before = pids()
    assert all(before), before
    node.run("restart", "corral")  # returns once the new agent is registered again
    assert pids() == before
    assert "node ctl1: registered" in node.run("show", "-p", "StatusText", "corral").stdout
