"""A real three-node MariaDB Galera cluster, each node in a network namespace of its own:
formed from nothing, then every node killed -9 at once and brought back with the positions
recovered. Each step checks that every acknowledged write is on every node.

The two tests share one cluster (module scope: forming it costs most of the time, two
mariabackup SSTs that each sleep 10 s by design of the SST script); the second needs the first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pymysql
import pytest
import pytest_asyncio

from corral.drivers.base import DriverError
from corral.drivers.galera import GaleraServer
from tests.galera.conftest import real_server_marks
from tests.galera.lab import GaleraLab, galera_lab, kill9, wait_for

pytestmark = real_server_marks(timeout=240)
TIMINGS: dict[str, float] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GaleraLab]:
    async with galera_lab(tmp_path_factory.mktemp("galera"), start_timeout=180) as made:
        yield made
    print(f"\ngalera timings: {TIMINGS}")


async def rows(server: GaleraServer) -> set[int]:
    """The ids in t.w as the node sees them after applying every write committed anywhere
    before the read (a causal read: Galera applies on the other nodes after the commit)."""
    await server.execute("SET SESSION wsrep_sync_wait = 1")
    return {int(r[0]) for r in await server.execute("SELECT id FROM t.w")}


def log_since(server: GaleraServer, offset: int) -> str:
    with server.settings.log_path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def test_three_nodes_form_from_nothing_and_a_write_is_on_every_node(lab: GaleraLab) -> None:
    began = time.monotonic()
    assert await asyncio.gather(*(s.initialize() for s in lab.servers)) == [True] * 3
    assert await lab.server(1).initialize() is False  # a second call leaves the datadir alone
    fresh = await lab.server(1).inspect()
    assert fresh.grastate is None and fresh.recovered is None and not fresh.running

    await lab.server(1).start(bootstrap=True)
    await lab.server(1).ensure_users()  # replicated: the joiners get them by SST
    await lab.server(1).execute("CREATE DATABASE t")
    await lab.server(1).execute("CREATE TABLE t.w (id INT PRIMARY KEY, node TEXT)")
    for i in (2, 3):  # one after the other: the only donor serves one SST at a time
        await lab.server(i).start()
    for server in lab.servers:
        status = await wait_for(server, lambda s: s.healthy and s.cluster_size == 3)
        assert (status.state_comment, status.cluster_status, status.ready) == (
            "Synced",
            "Primary",
            True,
        )
    TIMINGS["formation_s"] = round(time.monotonic() - began, 2)

    await lab.server(2).execute("INSERT INTO t.w VALUES (1, 'db2')")  # through a joiner
    for server in lab.servers:
        assert await rows(server) == {1}
    for i in (2, 3):  # the joiners were copied by mariabackup, the donor kept serving
        assert "mariabackup SST completed on joiner" in log_since(lab.server(i), 0)
    # the check user's password came from its reference, and reached a joiner with the data
    sock = str(lab.server(3).settings.socket)
    conn = pymysql.connect(unix_socket=sock, user="monitor", password="check-secret-1")
    conn.close()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(unix_socket=sock, user="monitor", password="wrong")
    assert "sst-secret-1" in lab.server(1).settings.config_path.read_text()  # for the SST helper
    assert lab.server(1).settings.config_path.stat().st_mode & 0o077 == 0  # root's alone


async def _write_until_killed(lab: GaleraLab, acked: list[int]) -> None:
    """Insert rows through db1 until the server dies under us; ``acked``: the committed ids."""
    for i in range(100, 100_000):
        try:
            await lab.server(1).execute("INSERT INTO t.w VALUES (%s, 'load')", (i,))
        except DriverError:
            return
        acked.append(i)
    raise AssertionError("the writer was never stopped")


async def test_every_node_killed_at_once_comes_back_primary_with_every_acknowledged_write(
    lab: GaleraLab,
) -> None:
    if not all(s.running() for s in lab.servers):
        pytest.skip("needs the cluster the formation test made")
    history = (await lab.server(1).status()).position
    acked: list[int] = []
    writer = asyncio.create_task(_write_until_killed(lab, acked))
    while len(acked) < 50:
        await asyncio.sleep(0.01)
        assert not writer.done(), "the writer stopped before the kill"
    await asyncio.gather(*(kill9(s) for s in lab.servers))  # a power cut of the whole cluster
    await asyncio.wait_for(writer, 30)
    assert acked

    began = time.monotonic()
    reports = await asyncio.gather(*(s.inspect() for s in lab.servers))
    TIMINGS["inspect_s"] = round(time.monotonic() - began, 2)
    for report in reports:  # a crash leaves no position: it must be recovered from InnoDB
        assert report.grastate is not None and report.grastate.position.seqno == -1
        assert not report.grastate.safe_to_bootstrap and not report.running
        assert report.recovered is not None and report.view is not None
    assert history is not None
    assert {r.recovered.uuid for r in reports if r.recovered} == {history.uuid}
    assert max(r.recovered.seqno for r in reports if r.recovered) >= history.seqno + len(acked)

    offsets = [s.settings.log_path.stat().st_size for s in lab.servers]
    restart = time.monotonic()
    await asyncio.gather(
        *(s.start(position=r.recovered) for s, r in zip(lab.servers, reports, strict=True))
    )
    for server in lab.servers:  # pc.recovery: the saved view re-forms the primary by itself
        await wait_for(server, lambda s: s.healthy and s.cluster_size == 3)
    TIMINGS["full_crash_restart_s"] = round(time.monotonic() - restart, 2)
    TIMINGS["full_crash_recovery_s"] = round(time.monotonic() - began, 2)

    for server, offset in zip(lab.servers, offsets, strict=True):
        assert set(acked) <= await rows(server), f"{server.name} lost acknowledged writes"
        # history kept: a node behind catches up by IST (the SST script logs "IST completed"),
        # never by a full copy
        assert "SST completed on joiner" not in log_since(server, offset)
    after = (await lab.server(2).status()).position
    assert after is not None and after.uuid == history.uuid
    await lab.server(3).execute("INSERT INTO t.w VALUES (1000000, 'after')")  # writable
    assert 1_000_000 in await rows(lab.server(1))
    rss = [int(_vm_rss(await s.pid())) for s in lab.servers]
    TIMINGS["rss_mb_max"] = round(max(rss) / 1024, 1)


def _vm_rss(pid: int | None) -> str:
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return line.split()[1]
    raise AssertionError(f"no VmRSS for pid {pid}")


async def test_after_a_full_crash_the_most_advanced_node_bootstraps_once_marked_safe(
    lab: GaleraLab,
) -> None:
    """The path without pc.recovery (what a controller does when the saved views cannot
    re-form a primary): bootstrap the most advanced node, the others join it by IST."""
    if not all(s.running() for s in lab.servers):
        pytest.skip("needs the cluster the earlier tests left")
    acked = list(range(2_000_000, 2_000_030))
    for i in acked:
        await lab.server(2).execute("INSERT INTO t.w VALUES (%s, 'before')", (i,))
    await asyncio.gather(*(kill9(s) for s in lab.servers))
    reports = await asyncio.gather(*(s.inspect() for s in lab.servers))
    positions = {s.settings.node: r.recovered for s, r in zip(lab.servers, reports, strict=True)}
    seqnos = {node: p.seqno for node, p in positions.items() if p is not None}
    assert len(seqnos) == 3
    best = max(lab.servers, key=lambda s: (seqnos[s.settings.node], s.settings.node))
    chosen = positions[best.settings.node]

    began = time.monotonic()
    with pytest.raises(DriverError, match="safe_to_bootstrap"):  # Galera's own guard
        await best.start(bootstrap=True, position=chosen)
    assert not best.running()
    await best.allow_bootstrap()
    marked = await best.inspect()
    assert marked.grastate is not None and marked.grastate.safe_to_bootstrap
    await best.start(bootstrap=True, position=chosen)
    others = [s for s in lab.servers if s is not best]
    await asyncio.gather(*(s.start(position=positions[s.settings.node]) for s in others))
    for server in lab.servers:
        await wait_for(server, lambda s: s.healthy and s.cluster_size == 3)
    TIMINGS["bootstrap_after_crash_s"] = round(time.monotonic() - began, 2)
    for server in lab.servers:
        assert set(acked) <= await rows(server), f"{server.name} lost acknowledged writes"
    with pytest.raises(DriverError, match="mariadbd runs"):
        await best.allow_bootstrap()  # never under a running server
