"""The server shell's failure paths on a real mariadbd (one node in a namespace): each failure
is a DriverError that says why, and leaves no server running."""

from __future__ import annotations

import asyncio
import dataclasses
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.drivers.base import DriverError
from corral.drivers.galera import GaleraServer
from tests.galera.conftest import real_server_marks
from tests.galera.lab import GaleraLab, address_of, galera_lab, ns_of

pytestmark = real_server_marks(timeout=120)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GaleraLab]:
    async with galera_lab(tmp_path_factory.mktemp("galera1"), count=1, start_timeout=60) as made:
        assert await made.server(1).initialize()
        yield made


def other(server: GaleraServer, **changes: object) -> GaleraServer:
    """A server over another base dir (same namespace and address), same timeouts."""
    settings = dataclasses.replace(server.settings, **changes)  # type: ignore[arg-type]
    return GaleraServer(settings, start_timeout=server.start_timeout, stop_timeout=2.0)


@pytest.fixture
def port_taken() -> Iterator[None]:
    """Something else listens on the node's MySQL port (inside the node's namespace)."""
    code = (
        "import socket,sys,time; s=socket.socket(); "
        f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('{address_of(1)}', 3306)); "
        "s.listen(); print('up', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        ["ip", "netns", "exec", ns_of(1), sys.executable, "-c", code], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"up"
        yield
    finally:
        holder.kill()  # our own child, by its pid
        holder.wait()


async def test_stopping_a_stopped_server_succeeds_and_reports_it_stopped(lab: GaleraLab) -> None:
    server = lab.server(1)
    await server.stop()
    await server.stop()
    status = await server.status()
    assert not status.running and not status.healthy and "not running" in status.detail


async def test_a_start_on_a_port_in_use_fails_with_the_servers_reason(
    lab: GaleraLab, port_taken: None
) -> None:
    server = lab.server(1)
    with pytest.raises(DriverError) as caught:
        await server.start(bootstrap=True)
    message = str(caught.value)
    assert "galera db1" in message and "exited with code" in message
    assert "Address already in use" in message or "Bind on TCP/IP port" in message
    assert not server.running()
    await server.stop()  # and a stop after a failed start is fine


async def test_a_running_server_is_reported_without_recovery_and_a_second_start_is_refused(
    lab: GaleraLab,
) -> None:
    server = lab.server(1)
    await server.start(bootstrap=True)
    try:
        report = await server.inspect()
        assert report.running and report.recovered is None  # never --wsrep-recover on a live one
        assert report.grastate is not None and report.grastate.position.seqno == -1
        status = await server.status()
        assert status.healthy and status.cluster_size == 1
        with pytest.raises(DriverError, match="already runs"):
            await server.start()
    finally:
        await server.stop()
    clean = await server.inspect()  # a clean stop saves the position: nothing to recover
    assert clean.grastate is not None and clean.grastate.position.seqno >= 0
    assert clean.grastate.safe_to_bootstrap and clean.recovered is None and not clean.running


async def test_a_corrupt_grastate_is_refused_naming_the_file_and_line(lab: GaleraLab) -> None:
    server = lab.server(1)
    path = server.settings.datadir / "grastate.dat"
    good = path.read_text()
    try:
        path.write_text(good.replace("seqno:", "seqno: banana #"))
        with pytest.raises(DriverError, match=r"grastate.dat:\d+: seqno 'banana"):
            await server.inspect()
    finally:
        path.write_text(good)


async def test_bad_datadirs_are_refused_with_the_reason(lab: GaleraLab) -> None:
    base = lab.tmp / "bad"
    server = other(lab.server(1), base_dir=base)
    with pytest.raises(DriverError, match="holds no database; initialize first"):
        await server.start(bootstrap=True)
    server.settings.datadir.mkdir(parents=True)
    (server.settings.datadir / "stray.txt").write_text("not a database")
    with pytest.raises(DriverError, match="is not empty but holds no database"):
        await server.initialize()
    assert (server.settings.datadir / "stray.txt").exists()  # nothing was overwritten
    assert not server.running()


async def test_a_joiner_with_no_primary_to_join_fails_its_start_and_is_stopped(
    lab: GaleraLab,
) -> None:
    """mariadbd waits for a primary component, takes no SQL and ignores SIGTERM meanwhile:
    the start gives up after its timeout and the stop forces it."""
    alone = other(
        lab.server(1),
        base_dir=lab.tmp / "joiner",
        peers=(address_of(1), "198.18.72.99"),  # nobody there
    )
    alone.start_timeout = 4.0
    assert await alone.initialize()
    starting = asyncio.create_task(alone.start())
    while not alone.running():
        await asyncio.sleep(0.05)
        assert not starting.done(), starting
    status = await alone.status()  # it runs, but is nobody's to use
    assert status.running and not status.answering and not status.healthy and status.detail
    with pytest.raises(DriverError, match=r"took no SQL within 4s"):
        await starting
    assert not alone.running()
    assert "after SIGTERM: SIGKILL" in alone.settings.log_path.read_text()  # it ignored SIGTERM


async def test_a_recovery_that_finds_no_position_fails_with_the_servers_reason(
    lab: GaleraLab,
) -> None:
    """A crashed node (seqno -1) whose InnoDB files are damaged: --wsrep-recover cannot say
    where it was, and inspect() says so instead of inventing a position."""
    source = lab.server(1)
    assert not source.running()
    broken = other(source, base_dir=lab.tmp / "broken")
    shutil.copytree(source.settings.datadir, broken.settings.datadir)
    grastate = broken.settings.datadir / "grastate.dat"
    grastate.write_text(re.sub(r"seqno:\s+\d+", "seqno:   -1", grastate.read_text()))
    (broken.settings.datadir / "ibdata1").write_bytes(b"\0" * 4096)
    with pytest.raises(
        DriverError, match=r"galera db1: --wsrep-recover exited \d+ without a position: \S"
    ):
        await broken.inspect()
    assert not broken.running()


async def test_a_server_runs_as_the_mysql_user_when_told_and_says_when_it_cannot(
    lab: GaleraLab,
) -> None:
    """On a real node mariadbd runs as ``mysql``: corral hands it its dirs, and refuses a base
    dir that user cannot reach (the agent's own state dir is 0700)."""
    hidden = other(lab.server(1), base_dir=lab.tmp / "as-mysql", run_as="mysql")
    with pytest.raises(DriverError, match=r"runs as mysql, which cannot enter .* \(mode 07"):
        await hidden.initialize()
    base = Path(tempfile.mkdtemp(prefix="corral-galera-test-"))
    try:
        base.chmod(0o711)
        server = other(lab.server(1), base_dir=base / "db1", run_as="mysql")
        assert await server.initialize()
        await server.start(bootstrap=True)
        try:
            assert (await server.status()).healthy
            pid = await server.pid()
            assert (
                pid is not None
                and Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam("mysql").pw_uid
            )
            assert server.settings.config_path.stat().st_mode & 0o077 == 0
        finally:
            await server.stop()
        assert (await server.inspect()).grastate is not None
    finally:
        shutil.rmtree(base)
