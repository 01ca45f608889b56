"""The systemd driver against a real systemd booted as PID 1 of its own namespaces."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers import SystemdUnit
from corral.drivers.base import DriverError
from corral.drivers.systemd import parse_show, status_from_show
from corral.spec.model import SystemdDriver as SystemdSpec

from .helpers import alive, eventually
from .systemd_ns import SystemdNamespace, booted, unavailable_reason

UNITS = {
    "web.service": """
        [Service]
        ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /run/web {port}
        ExecStartPre=/bin/sh -c 'mkdir -p /run/web && echo corral-ns-web > /run/web/index.html'
    """,
    "sleeper.service": """
        [Service]
        ExecStart=/bin/sleep 300
    """,
    "oneshot-fails.service": """
        [Service]
        Type=oneshot
        ExecStart=/bin/sh -c 'echo cannot open config >&2; exit 3'
    """,
    "no-binary.service": """
        [Service]
        Type=exec
        ExecStart=/nonexistent/daemon
    """,
    "stubborn.service": """
        [Service]
        ExecStart=/bin/sh -c "trap '' TERM; while :; do sleep 1; done"
        TimeoutStopSec=300
    """,
    "never-ready.service": """
        [Service]
        Type=notify
        ExecStart=/bin/sleep 300
        TimeoutStartSec=300
    """,
    "restarts.service": """
        [Service]
        ExecStart=/bin/sleep 300
        Restart=always
        RestartSec=120
    """,
}


def unit_text(body: str, port: int) -> str:
    lines = [line.strip() for line in body.strip().splitlines()]
    return "[Unit]\nDefaultDependencies=no\n" + "\n".join(lines).format(port=port) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def port() -> int:
    """The loopback port of web.service (the namespace shares the host's network)."""
    return free_port()


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[SystemdNamespace]:
    with booted(tmp_path_factory.mktemp("systemd-ns")) as sd:
        for name, body in UNITS.items():
            (sd.root / "run/systemd/system" / name).write_text(unit_text(body, port))
        sd.run("daemon-reload")
        yield sd


@pytest.fixture
def sd(ns: SystemdNamespace) -> Iterator[SystemdNamespace]:
    """The shared systemd, with every test unit stopped and reset after the test."""
    yield ns
    ns.run("stop", *UNITS, check=False)
    ns.run("reset-failed", check=False)


def driver(ns: SystemdNamespace, unit: str, **kw: float) -> SystemdUnit:
    stop_timeout = kw.pop("stop_timeout", 20.0)
    return SystemdUnit(
        unit.split(".")[0],
        SystemdSpec(unit=unit, stop_timeout=stop_timeout),
        systemctl=ns.systemctl,
        **kw,
    )


def main_pid(ns: SystemdNamespace, unit: str) -> int:
    return int(ns.run("show", "-p", "MainPID", "--value", unit).stdout.strip())


def http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
        body: bytes = resp.read()
        return body.decode()


async def serves(port: int) -> bool:
    try:
        return "corral-ns-web" in await asyncio.to_thread(http_get, port)
    except (OSError, urllib.error.URLError):
        return False


# --- happy path ---------------------------------------------------------------------------


async def test_start_serve_stop(sd: SystemdNamespace, port: int) -> None:
    d = driver(sd, "web.service")
    st = await d.status()
    assert st.state == "stopped" and "inactive" in st.detail
    assert not await d.adopt()

    await d.start()
    st = await d.status()
    assert st.state == "running" and "main pid" in st.detail
    await eventually(lambda: serves(port), what="HTTP answers from the unit")

    await d.stop()
    assert (await d.status()).state == "stopped"
    assert not await serves(port)


async def test_restart_gives_a_new_main_process(sd: SystemdNamespace) -> None:
    d = driver(sd, "sleeper.service")
    await d.start()
    before = main_pid(sd, "sleeper.service")
    await d.restart()
    after = main_pid(sd, "sleeper.service")
    assert before and after and before != after
    assert (await d.status()).state == "running"


async def test_new_driver_adopts_an_active_unit(sd: SystemdNamespace) -> None:
    await driver(sd, "sleeper.service").start()
    pid = main_pid(sd, "sleeper.service")
    fresh = driver(sd, "sleeper.service")  # as after an agent restart
    assert await fresh.adopt()
    assert main_pid(sd, "sleeper.service") == pid  # adopted, not restarted
    await fresh.stop()
    assert not await fresh.adopt()


# --- failures -----------------------------------------------------------------------------


async def test_failing_start_raises_with_the_reason(sd: SystemdNamespace) -> None:
    d = driver(sd, "oneshot-fails.service")
    with pytest.raises(DriverError, match=r"could not start oneshot-fails.service.*exit status 3"):
        await d.start()
    st = await d.status()
    assert st.state == "failed" and "Result=exit-code" in st.detail
    await d.stop()  # a stop ends in "stopped", the failure is reset
    assert (await d.status()).state == "stopped"

    d = driver(sd, "no-binary.service")
    with pytest.raises(DriverError, match=r"no-binary.service.*Result=exit-code.*exit status 203"):
        await d.start()  # 203: systemd's EXIT_EXEC


async def test_missing_unit(sd: SystemdNamespace) -> None:
    d = driver(sd, "no-such-unit.service")
    with pytest.raises(DriverError, match="not found"):
        await d.start()
    st = await d.status()
    assert st.state == "stopped" and st.detail == "unit not found"
    await d.stop()  # stopping what does not exist succeeds
    assert not await d.adopt()


async def test_killing_the_main_process(sd: SystemdNamespace) -> None:
    d = driver(sd, "sleeper.service")
    await d.start()
    sd.sh(f"kill -KILL {main_pid(sd, 'sleeper.service')}")

    async def failed() -> bool:
        return (await d.status()).state == "failed"

    await eventually(failed, what="failed after SIGKILL")
    assert "killed by signal 9" in (await d.status()).detail

    await d.start()
    sd.sh(f"kill -TERM {main_pid(sd, 'sleeper.service')}")  # a clean exit for systemd

    async def stopped() -> bool:
        return (await d.status()).state == "stopped"

    await eventually(stopped, what="stopped after SIGTERM")


async def test_unit_that_systemd_will_restart_is_reported_failed(sd: SystemdNamespace) -> None:
    d = driver(sd, "restarts.service")
    await d.start()
    sd.sh(f"kill -KILL {main_pid(sd, 'restarts.service')}")

    async def failed() -> bool:
        return (await d.status()).state == "failed"

    await eventually(failed, what="auto-restart seen as failed")
    assert "systemd restarts it" in (await d.status()).detail
    await d.stop()
    assert (await d.status()).state == "stopped"


async def test_stop_escalates_to_sigkill_after_stop_timeout(sd: SystemdNamespace) -> None:
    d = driver(sd, "stubborn.service", stop_timeout=1.0)
    await d.start()
    procs = sd.cgroup / "system.slice/stubborn.service/cgroup.procs"
    await eventually(lambda: len(procs.read_text().split()) == 2, what="shell and its sleep")
    t0 = time.monotonic()
    await d.stop()  # the unit's own TimeoutStopSec is 300 s
    assert 0.9 < time.monotonic() - t0 < 15
    assert (await d.status()).state == "stopped"
    assert not procs.exists() or procs.read_text().strip() == ""  # every process is gone


async def test_start_that_overruns_is_cancelled(sd: SystemdNamespace) -> None:
    d = driver(sd, "never-ready.service", start_timeout=1.0)
    with pytest.raises(DriverError, match=r"did not start within 1s; stopped it again"):
        await d.start()
    assert (await d.status()).state == "stopped"  # not left "activating"


async def test_unreachable_systemd_raises_instead_of_guessing() -> None:
    d = SystemdUnit(
        "x",
        SystemdSpec(unit="x.service"),
        systemctl=("nsenter", "-t", "2147483646", "-m", "-p", "systemctl"),
    )
    with pytest.raises(DriverError, match=r"systemctl show x\.service failed"):
        await d.status()


async def test_roles_are_refused() -> None:
    d = SystemdUnit("x", SystemdSpec(unit="x.service"))
    with pytest.raises(DriverError, match="no promoted role"):
        await d.promote()
    with pytest.raises(DriverError, match="no promoted role"):
        await d.demote()


@pytest.mark.parametrize(
    ("show", "state", "detail"),
    [
        (
            "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=7",
            "running",
            "active (running), main pid 7",
        ),
        (
            "LoadState=loaded\nActiveState=reloading\nSubState=reload\nMainPID=7",
            "running",
            "reloading",
        ),
        (
            "LoadState=loaded\nActiveState=deactivating\nSubState=stop-sigterm",
            "running",
            "deactivating",
        ),
        (
            "LoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success",
            "stopped",
            "inactive (dead)",
        ),
        ("LoadState=not-found\nActiveState=inactive\nSubState=dead", "stopped", "unit not found"),
        (
            "LoadState=loaded\nActiveState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=3",
            "failed",
            "Result=exit-code, exit status 3",
        ),
        (
            "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=signal\nExecMainCode=2\nExecMainStatus=9",
            "failed",
            "killed by signal 9",
        ),
        (
            "LoadState=loaded\nActiveState=maintenance\nSubState=x",
            "failed",
            "unexpected state maintenance",
        ),
    ],
)
def test_show_mapping(show: str, state: str, detail: str) -> None:
    st = status_from_show(parse_show(show))
    assert st.state == state and detail in st.detail


# --- the fixture leaves the host alone ------------------------------------------------------

HOST_KNOBS = ("fs/file-max", "fs/nr_open", "kernel/core_pattern", "kernel/hostname")


def host_facts() -> dict[str, str]:
    facts = {k: Path("/proc/sys", k).read_text() for k in HOST_KNOBS}
    facts["etc-units"] = "\n".join(sorted(str(p) for p in Path("/etc/systemd/system").rglob("*")))
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    watched = {"/", "/tmp", "/var/tmp", "/run", "/sys", "/sys/fs/cgroup", "/proc", "/dev/console"}
    facts["mounts"] = "\n".join(m for m in mounts if m.split()[4] in watched)
    return facts


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file in the host's /tmp that a booted systemd must neither see nor remove."""
    path = Path("/tmp") / f"corral-host-marker-{os.getpid()}-{secrets.token_hex(3)}"
    path.write_text("host")
    yield path
    path.unlink(missing_ok=True)


def test_namespace_leaves_host_untouched(tmp_path: Path, marker: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    before = host_facts()
    sd = SystemdNamespace(tmp_path / "ns")
    try:
        sd.boot()
        assert sd.sh("stat -f -c %T /tmp /var/tmp /run").stdout.split() == ["tmpfs"] * 3
        assert not (sd.root / "tmp" / marker.name).exists()  # its /tmp is a fresh tmpfs
        assert marker.read_text() == "host"
        units = sd.run("list-units", "--plain", "--no-legend").stdout.split("\n")
        loaded = {line.split()[0] for line in units if line.strip()}
        assert "corral-test.target" in loaded
        started = {
            u for u in loaded if u.rsplit(".", 1)[-1] in ("service", "socket", "timer", "path")
        }
        assert started == set()  # no host service, socket or timer was started
        assert host_facts() == before
        pid = sd.pid
    finally:
        sd.close()
    assert not alive(pid)  # a zombie until the host's PID 1 reaps it, but dead
    assert not sd.cgroup.exists()
    assert marker.read_text() == "host"
    assert host_facts() == before
    assert subprocess.run(["touch", str(marker)], check=False).returncode == 0  # host / is rw
