"""Lease renewals over etcd's HTTP gateway (real etcd): one kept-open connection for many
renewals, replies matched to their callers, and a connection that fails, hangs or ends is
replaced on the next member without the lease lapsing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from ssl import SSLContext

import pytest

from corral.store import LeaseNotFound, StoreError, StoreUnavailable
from corral.store.etcd import EtcdStore
from corral.store.lab import EtcdLab

pytestmark = pytest.mark.etcd

RENEWED = "etcd_debugging_lease_renewed_total"


def metric(lab: EtcdLab, member: int, prefix: str) -> float:
    """A counter from a member's /metrics (the first line starting with ``prefix``)."""
    url = lab.endpoints[member] + "/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {prefix!r} at {url}")


@contextlib.contextmanager
def stopped(lab: EtcdLab, member: int) -> Iterator[None]:
    """The member hangs (SIGSTOP) inside the block: its TCP connections stay open."""
    pid = lab.members[member].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_renewals_share_one_connection(
    etcd1: EtcdLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects: list[tuple[str, int]] = []
    real = asyncio.open_connection

    async def counted(
        host: str, port: int, ssl: SSLContext | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        connects.append((host, port))
        return await real(host, port, ssl=ssl)

    monkeypatch.setattr(asyncio, "open_connection", counted)  # what _etcd_http calls
    store = etcd1.store()
    try:
        before = metric(etcd1, 0, RENEWED)
        a, b = await store.grant(5), await store.grant(5)
        for _ in range(20):
            assert await store.keepalive(a.id) == 5
        ttls = await asyncio.gather(*(store.keepalive(x.id) for x in (a, b, a, b, a, b)))
        assert ttls == [5] * 6
        assert len(connects) == 1  # not one connection per renewal
        assert metric(etcd1, 0, RENEWED) - before == 26  # and every renewal reached etcd
    finally:
        await store.close()


async def test_concurrent_renewals_get_their_own_replies(etcd1: EtcdLab) -> None:
    """Replies are matched to their callers: a gone lease's LeaseNotFound never lands on a live
    lease's caller, and the connection keeps serving after a refusal."""
    store = etcd1.store()
    try:
        live, gone = await store.grant(5), await store.grant(5)
        await store.revoke(gone.id)
        order = [live, gone, live, gone, gone, live]
        results = await asyncio.gather(
            *(store.keepalive(x.id) for x in order), return_exceptions=True
        )
        for lease, result in zip(order, results, strict=True):
            if lease is live:
                assert result == 5
            else:
                assert isinstance(result, LeaseNotFound)
        assert await store.keepalive(live.id) == 5
        with pytest.raises(LeaseNotFound):
            await store.keepalive(gone.id)
    finally:
        await store.close()


@pytest.mark.parametrize("role", ["follower", "leader"])
async def test_lease_never_lapses_when_the_member_renewing_it_is_killed(
    etcd3: EtcdLab, role: str
) -> None:
    leader = await etcd3.leader()
    victim = leader if role == "leader" else (leader + 1) % 3
    order = [victim] + [i for i in range(3) if i != victim]
    store = etcd3.store(*order, timeout=4.0, attempt_timeout=0.5)
    observer = etcd3.store(*order[1:])
    try:
        lease = await store.grant(2)
        await store.put(b"/nodes/n1", b"up", lease=lease.id)
        await store.keepalive(lease.id)
        assert store.endpoint == etcd3.endpoints[victim]
        last_ok, longest_gap, start = time.monotonic(), 0.0, time.monotonic()
        killed = False
        while time.monotonic() - start < 3.0:
            if not killed and time.monotonic() - start > 0.5:
                etcd3.members[victim].kill()
                killed = True
            assert await store.keepalive(lease.id) == 2  # never raises: moved to a live member
            now = time.monotonic()
            longest_gap, last_ok = max(longest_gap, now - last_ok), now
            await asyncio.sleep(0.2)
        assert store.endpoint != etcd3.endpoints[victim]
        assert longest_gap < 2.0, f"renewals stopped for {longest_gap:.2f}s (ttl 2s)"
        assert await observer.get(b"/nodes/n1") is not None  # the lease never expired
    finally:
        await store.close()
        await observer.close()


async def test_a_hung_member_is_left_within_the_attempt_timeout(etcd3: EtcdLab) -> None:
    """SIGSTOP keeps the TCP connection open and silent: the renewal times out on it and is
    re-sent on a new connection to another member; the late reply, once the member wakes up,
    goes to a closed connection and cannot confuse later renewals."""
    leader = await etcd3.leader()
    victim = (leader + 1) % 3
    order = [victim] + [i for i in range(3) if i != victim]
    store = etcd3.store(*order, timeout=3.0, attempt_timeout=0.5)
    try:
        lease = await store.grant(3)
        await store.keepalive(lease.id)
        with stopped(etcd3, victim):
            start = time.monotonic()
            assert await store.keepalive(lease.id) == 3
            assert time.monotonic() - start < 2.0
            assert store.endpoint != etcd3.endpoints[victim]
        await asyncio.sleep(0.3)
        for _ in range(5):
            assert await store.keepalive(lease.id) == 3
        await store.revoke(lease.id)
        with pytest.raises(LeaseNotFound):
            await store.keepalive(lease.id)
    finally:
        await store.close()


async def test_a_connection_ended_by_a_restart_is_reopened(etcd1: EtcdLab) -> None:
    """The only member stops (etcd closes its connections): renewals fail with
    StoreUnavailable within the timeout; after the restart the same store renews again."""
    store = etcd1.store(timeout=1.0, attempt_timeout=0.5)
    try:
        lease = await store.grant(30)
        assert await store.keepalive(lease.id) == 30
        await etcd1.members[0].stop()
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="no endpoint answered"):
            await store.keepalive(lease.id)
        assert time.monotonic() - start < 2.5
        await etcd1.members[0].start(wait=False)
        await etcd1.members[0].wait_healthy(20)
        deadline = time.monotonic() + 10
        while True:  # the restarted member needs a moment to lead again
            try:
                assert await store.keepalive(lease.id) == 30
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "never renewed after the restart"
                await asyncio.sleep(0.2)
    finally:
        await store.close()


async def test_cancelled_renewal_leaves_renewals_usable(etcd1: EtcdLab) -> None:
    store = etcd1.store(timeout=5.0, attempt_timeout=2.0)
    try:
        lease = await store.grant(10)
        await store.keepalive(lease.id)
        with stopped(etcd1, 0):
            pending = asyncio.create_task(store.keepalive(lease.id))
            await asyncio.sleep(0.3)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        for _ in range(3):
            assert await store.keepalive(lease.id) == 10
    finally:
        await store.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers (a hung host)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


async def test_close_fails_a_renewal_in_flight_and_later_ones(black_hole: str) -> None:
    store = EtcdStore([black_hole], timeout=5.0, attempt_timeout=2.0)
    pending = asyncio.create_task(store.keepalive(1234))
    await asyncio.sleep(0.3)
    assert not pending.done()  # nothing answers
    start = time.monotonic()
    await store.close()
    with pytest.raises(StoreError):
        await pending
    assert time.monotonic() - start < 1.5  # not left hanging on the silent endpoint
    with pytest.raises(StoreError, match="closed"):
        await store.keepalive(1234)


async def test_store_unavailable_names_every_endpoint(etcd1: EtcdLab) -> None:
    store = EtcdStore([*etcd1.endpoints, "127.0.0.1:1"], timeout=1.0, attempt_timeout=0.5)
    try:
        lease = await store.grant(10)
        await store.keepalive(lease.id)
        await etcd1.members[0].stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.keepalive(lease.id)
        assert etcd1.endpoints[0] in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    finally:
        await store.close()
