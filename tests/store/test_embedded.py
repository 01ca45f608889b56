"""EmbeddedEtcd: supervision, clean stop, start errors, timing profiles, argv."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from corral.store import (
    EmbeddedError,
    EmbeddedEtcd,
    MemberConfig,
    etcd_timing,
    find_etcd,
    min_lease_ttl,
)
from corral.store.lab import EtcdLab, free_ports


def gone(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def fake_binary(tmp_path: Path, body: str) -> str:
    """A stand-in for etcd (a Python script; etcd's flags land in its argv)."""
    path = tmp_path / "fake-etcd"
    path.write_text(f"#!{sys.executable}\nimport signal, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def config(tmp_path: Path, name: str = "solo", **kw: object) -> MemberConfig:
    client, peer = free_ports(2)
    fields: dict[str, object] = {
        "client_url": f"http://127.0.0.1:{client}",
        "peer_url": f"http://127.0.0.1:{peer}",
        **kw,
    }
    return MemberConfig(name=name, data_dir=tmp_path / name, **fields)  # type: ignore[arg-type]


@pytest.mark.etcd
async def test_supervisor_restarts_a_killed_member_of_three_and_stop_is_clean(
    tmp_path: Path,
) -> None:
    lab = EtcdLab(tmp_path, 3)
    try:
        await lab.start()
        for m in lab.members:
            m.supervise()
        victim = lab.members[1]
        first_pid = victim.pid
        victim.kill()
        deadline = time.monotonic() + 20
        while not (victim.restarts == 1 and victim.running and await victim.healthy()):
            assert time.monotonic() < deadline, "member was not restarted"
            await asyncio.sleep(0.1)
        assert victim.pid != first_pid and gone(first_pid)
        store = lab.store(1)  # served by the restarted member itself, with its old data
        try:
            await store.put(b"/after", b"restart")
            assert (await store.range(b"/")).kvs[0].value == b"restart"
        finally:
            await store.close()
        assert [m.restarts for m in lab.members] == [0, 1, 0]
    finally:
        pids = [m.pid for m in lab.members]
        await lab.stop()
    assert not any(m.running for m in lab.members)
    assert all(gone(pid) for pid in pids)
    assert all(m.log_path.parent == tmp_path and m.log_path.exists() for m in lab.members)


@pytest.mark.etcd
async def test_a_member_that_cannot_start_reports_why(tmp_path: Path) -> None:
    member = EmbeddedEtcd(config(tmp_path, "bad", peer_url="http://127.0.0.1:notaport"))
    with pytest.raises(EmbeddedError, match="bad"):
        await member.start(timeout=10)
    await member.stop()


async def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)")
    member = EmbeddedEtcd(config(tmp_path), binary=binary)
    await member.start(wait=False)
    await asyncio.sleep(0.3)  # let it install its SIGTERM handler
    start = time.monotonic()
    await member.stop(timeout=0.5)
    assert 0.4 < time.monotonic() - start < 3
    assert not member.running and gone(member.pid)
    await member.stop()  # idempotent


async def test_supervisor_backs_off_on_a_crash_loop(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "sys.exit(3)")
    member = EmbeddedEtcd(config(tmp_path), binary=binary, max_backoff=0.4)
    await member.start(wait=False)
    member.supervise()
    await asyncio.sleep(1.5)  # backoff 0.4, 0.4, ...: a handful of restarts, not hundreds
    await member.stop()
    assert 2 <= member.restarts <= 6
    assert not member.running


async def test_down_since_says_since_when_a_supervised_member_is_down(tmp_path: Path) -> None:
    """What the agent states to its peers' proof rounds (corral.core.quorum): the member was
    down at least since then; None while a process runs, and before the supervisor saw the
    exit (never an earlier exit's time)."""
    binary = fake_binary(tmp_path, "import time; time.sleep(0.3)")
    member = EmbeddedEtcd(config(tmp_path), binary=binary, max_backoff=1.0)
    await member.start(wait=False)
    assert member.down_since() is None  # running
    member.supervise()
    await member.wait()
    await asyncio.sleep(0.05)
    since = member.down_since()
    assert since is not None and time.monotonic() - since < 0.3  # in its backoff
    await asyncio.sleep(1.1)  # restarted: running again
    assert member.running and member.down_since() is None
    await member.stop()


def test_timing_profiles_and_min_ttl() -> None:
    assert etcd_timing("lan") == (50, 500)
    assert etcd_timing("wan") == (250, 2500)
    assert etcd_timing("local") == (25, 250)
    assert [min_lease_ttl(etcd_timing(p)[1]) for p in ("local", "lan", "wan")] == [1, 1, 4]
    with pytest.raises(ValueError, match="lan"):
        etcd_timing("moon")


def test_argv_carries_the_config(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "m0",
        initial_cluster={"m0": "http://127.0.0.1:1", "m1": "http://127.0.0.1:2"},
        initial_cluster_state="existing",
        heartbeat_ms=25,
        election_ms=250,
        token="t",
        binary="/opt/etcd",
    )
    argv = cfg.argv()
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert argv[0] == "/opt/etcd"
    assert flags["--initial-cluster"] == "m0=http://127.0.0.1:1,m1=http://127.0.0.1:2"
    assert flags["--initial-cluster-state"] == "existing"
    assert (flags["--heartbeat-interval"], flags["--election-timeout"]) == ("25", "250")
    assert flags["--initial-cluster-token"] == "t"
    assert flags["--auto-compaction-retention"] == "1h"
    assert cfg.log_path == tmp_path / "m0.log"


def test_find_etcd_finds_an_executable() -> None:
    path = find_etcd()
    assert os.access(path, os.X_OK)
