"""The README's "Running a cluster" steps, as written, on three hosts, then a power-off.

Each host is a real systemd (PID 1 of its own namespaces, :mod:`tests.drivers.systemd_ns`) in
a network namespace of its own on one bridge (198.18.76.11-13), with writable overlays of the
host's /etc and /var/lib (the host's files are never written). The store is embedded on the
three, over TLS from ``corral ca init``'s bundle, copied from ctl1 to the others as the README
says (``scp -rp /etc/corral``). Powering a host off is killing its systemd: every process of
its PID namespace dies at once (agent, lease guard, etcd member, services).

What differs from the README: corral runs from this checkout (a drop-in sets ``PYTHONPATH``;
the unit's ``ExecStart=`` is the one ``corral install-unit`` writes), and the one resource is
a ``sleep`` (no HAProxy, no VIP: those have their own lab tests).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

import corral
from corral.lab import netns

from ..drivers.systemd_ns import SystemdNamespace, booted, unavailable_reason
from .etcd import eventually

SRC = Path(corral.__file__).resolve().parents[1]
NAMES = ("ctl1", "ctl2", "ctl3")
PREFIX = "cgd-"
SWITCH, BRIDGE = "cgd-sw", "cgd-br"
SPEC = "/etc/corral/spec.yaml"
OVERLAYS = """
for d in etc var/lib; do
  mkdir -p /run/ov/$d/up /run/ov/$d/work
  mount -t overlay overlay -o lowerdir=/$d,upperdir=/run/ov/$d/up,workdir=/run/ov/$d/work /$d
done
"""
RESOURCE = """  sleeper:
    process: {command: "/bin/sleep 100000", stop_timeout: 1s}
    mode: active-passive
"""


def address(name: str) -> str:
    return f"198.18.76.{11 + NAMES.index(name)}"


def corral_in(ns: SystemdNamespace, *args: str, check: bool = True) -> str:
    """``corral ARGS`` inside the host (its network, mounts, pids and host name), as root."""
    command = ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "corral.cli.main", *args]
    done = subprocess.run(
        ["nsenter", "-t", str(ns.pid), "-n", "-m", "-p", "-u", *command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"corral {shlex.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def _network_down() -> None:
    netns.remove_all([SWITCH, *(PREFIX + n for n in NAMES)])  # a crashed earlier run's: ours


def _network_up() -> None:
    netns.add_star(SWITCH, BRIDGE, {
        PREFIX + n: (f"cgd-{n}", "eth0", f"{address(n)}/24") for n in NAMES
    })  # fmt: skip


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SystemdNamespace]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    _network_down()
    try:
        _network_up()
        with contextlib.ExitStack() as stack:
            booted_hosts = {}
            for name in NAMES:
                ns = stack.enter_context(booted(tmp_path_factory.mktemp(name), PREFIX + name))
                ns.sh(OVERLAYS)
                subprocess.run(["nsenter", "-t", str(ns.pid), "-u", "hostname", name], check=True)
                ns.run("start", "systemd-journald.socket", "systemd-journald.service")
                booted_hosts[name] = ns
            yield booted_hosts
    finally:
        _network_down()


def where_running(ns: SystemdNamespace, resource: str) -> list[str]:
    """The nodes where ``corral status`` (asked on ``ns``) says ``resource`` runs."""
    try:
        shown = json.loads(corral_in(ns, "status", "--spec", SPEC, "--json", check=False))
    except json.JSONDecodeError:
        return []
    running = shown.get("resources", {}).get(resource, {}).get("running", [])
    return sorted(i["node"] for i in running)


def _active(ns: SystemdNamespace) -> bool:
    return ns.run("is-active", "corral", check=False).stdout.strip() == "active"


def test_the_steps_as_written(hosts: dict[str, SystemdNamespace]) -> None:
    ctl1 = hosts["ctl1"]
    nodes = [arg for n in NAMES for arg in ("--node", f"{n}={address(n)}")]
    out = corral_in(ctl1, "init", "--cluster", "cloud1", *nodes, "--role", "controller",
                    "--role", "lb")  # fmt: skip
    assert f"{SPEC}: written" in out
    assert "written" in corral_in(ctl1, "ca", "init", "--out", "/etc/corral/ca",
                                  "--cluster", "cloud1")  # fmt: skip
    spec = ctl1.root / SPEC.lstrip("/")
    spec.write_text(spec.read_text().replace("resources: {}\n", "resources:\n" + RESOURCE))
    assert "valid" in corral_in(ctl1, "validate", SPEC)
    for name in ("ctl2", "ctl3"):  # the README's `scp -rp /etc/corral ctlN:/etc/`
        shutil.copytree(ctl1.root / "etc/corral", hosts[name].root / "etc/corral")
    assert oct((hosts["ctl3"].root / "etc/corral/ca").stat().st_mode & 0o777) == "0o700"
    for ns in hosts.values():
        assert "daemon-reload: done" in corral_in(ns, "install-unit")
        dropin = ns.root / "etc/systemd/system/corral.service.d"
        dropin.mkdir(parents=True)
        (dropin / "checkout.conf").write_text(f"[Service]\nEnvironment=PYTHONPATH={SRC}\n")
        ns.run("daemon-reload")
        # --no-block: `start` returns at READY=1 (registered), which needs a store majority
        ns.run("enable", "--now", "--no-block", "corral")
    for name, ns in hosts.items():
        eventually(partial(_active, ns), 60, f"corral.service active on {name}")
        status = ns.run("show", "-p", "StatusText", "corral").stdout
        assert f"node {name}: registered" in status, status
    eventually(lambda: len(where_running(ctl1, "sleeper")) == 1, 30,
               "corral status showing the sleeper running on one node")  # fmt: skip


def test_report_from_a_node(hosts: dict[str, SystemdNamespace]) -> None:
    ctl2 = hosts["ctl2"]
    out = corral_in(ctl2, "report", "--spec", SPEC, "--remote", "", "-o", "/run/report.tar.gz")
    assert "/run/report.tar.gz" in out
    with tarfile.open(ctl2.root / "run/report.tar.gz") as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
    assert {"events.jsonl", "state.yaml", "status.json", "logs/ctl2.journal.txt"} <= names, names


def _pids(ns: SystemdNamespace) -> tuple[str, str, str]:
    """The host's etcd, sleep and lease-guard pids (its PID namespace: nothing else is seen)."""
    etcd = ns.sh("pgrep -x etcd || true").stdout.split()
    sleeper = ns.sh("pgrep -x sleep || true").stdout.split()
    guard = (ns.root / "var/lib/corral/guard.pid").read_text().split()
    return " ".join(etcd), " ".join(sleeper), " ".join(guard)


def test_restart_keeps_the_etcd_member_and_services(hosts: dict[str, SystemdNamespace]) -> None:
    holder = hosts[where_running(hosts["ctl1"], "sleeper")[0]]
    before = _pids(holder)
    assert all(before), before
    holder.run("restart", "corral")  # returns once the new agent is registered again
    assert _pids(holder) == before
    assert "registered" in holder.run("show", "-p", "StatusText", "corral").stdout


def test_powering_off_the_holder_moves_the_service(hosts: dict[str, SystemdNamespace]) -> None:
    (holder,) = where_running(hosts["ctl1"], "sleeper")
    others = {n: hosts[n] for n in NAMES if n != holder}
    asked = next(iter(others.values()))
    began = time.monotonic()
    hosts[holder].close()  # power off: its agent, guard, etcd member and sleep die together
    eventually(lambda: where_running(asked, "sleeper") not in ([], [holder]), 30,
               "the sleeper running on another node")  # fmt: skip
    moved = time.monotonic() - began
    (now,) = where_running(asked, "sleeper")
    assert now != holder
    sleeping = {name: ns.sh("pgrep -x sleep || true").stdout.split()
                for name, ns in others.items()}  # fmt: skip
    assert sum(map(len, sleeping.values())) == 1 and sleeping[now], sleeping  # one holder
    print(f"\nguide cluster: the sleeper moved from {holder} to {now} in {moved:.1f} s")
