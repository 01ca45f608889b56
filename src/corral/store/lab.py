"""A local etcd cluster on loopback for tests, benchmarks and ``corral demo``: free ports on
127.0.0.1, one data directory per member under ``base``, a timing profile (lan by default).

Cleanup: :func:`etcd_lab` stops every member it started (by PID) when its block ends, also on
an exception or a cancelled test; as a last resort an ``atexit`` hook SIGKILLs any member
process of this interpreter still running (a test run interrupted before its teardown).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import urllib.request
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from corral.store.embedded import EmbeddedEtcd, MemberConfig, etcd_timing
from corral.store.etcd import EtcdStore
from corral.store.tls import TlsFiles

_LIVE: weakref.WeakSet[EmbeddedEtcd] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for member in list(_LIVE):
        pid = member.pid
        if member.running and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (free when asked: a race with other
    programs is possible but unlikely on a test machine)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def is_leader(client_url: str, tls: TlsFiles | None = None) -> bool:
    """Whether the member at ``client_url`` is the raft leader now (its ``/metrics``)."""
    url = client_url.rstrip("/") + "/metrics"
    try:
        context = tls.ssl_context() if tls is not None else None
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("etcd_server_is_leader "):
                    return bool(line.split()[1] == "1")
    except OSError:
        return False
    return False


class EtcdLab:
    """``size`` members named m0.. on 127.0.0.1 with the etcd timing of ``profile``; with
    ``tls`` (a certificate valid for 127.0.0.1, for server and client use) over https with
    client certificates required, and :meth:`store` presents the same identity."""

    def __init__(
        self,
        base: Path,
        size: int,
        heartbeat_ms: int | None = None,
        election_ms: int | None = None,
        *,
        profile: str = "lan",
        tls: TlsFiles | None = None,
    ) -> None:
        self.tls = tls
        scheme = "https" if tls is not None else "http"
        default_heartbeat, default_election = etcd_timing(profile)
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        peers = {n: f"{scheme}://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)}
        self.members = [
            EmbeddedEtcd(
                MemberConfig(
                    name=n,
                    data_dir=base / n,
                    client_url=f"{scheme}://127.0.0.1:{ports[2 * i]}",
                    peer_url=peers[n],
                    initial_cluster=peers,
                    heartbeat_ms=heartbeat_ms or default_heartbeat,
                    election_ms=election_ms or default_election,
                    token=f"lab-{base.name}",
                    tls=tls,
                )
            )
            for i, n in enumerate(names)
        ]
        _LIVE.update(self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.config.client_url for m in self.members]

    def store(self, *members: int, timeout: float = 5.0, attempt_timeout: float = 1.0) -> EtcdStore:
        """A client of the given members (by index, in that order; default: all)."""
        chosen = [self.endpoints[i] for i in members] if members else self.endpoints
        return EtcdStore(chosen, timeout=timeout, attempt_timeout=attempt_timeout, tls=self.tls)

    @asynccontextmanager
    async def client(self, *members: int, **options: float) -> AsyncIterator[EtcdStore]:
        """:meth:`store`, closed when the block ends (pass or fail)."""
        store = self.store(*members, **options)
        try:
            yield store
        finally:
            await store.close()

    async def leader(self, timeout: float = 10.0) -> int:
        """Index of the member that leads now (waits for an election to end)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, m in enumerate(self.members):
                if m.running and await asyncio.to_thread(is_leader, m.config.client_url, self.tls):
                    return i
            if loop.time() > deadline:
                raise TimeoutError("no etcd leader")
            await asyncio.sleep(0.05)

    async def start(self, timeout: float = 30.0) -> None:
        for m in self.members:
            await m.start(wait=False)
        for m in self.members:
            await m.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        for m in self.members:
            await m.wait_healthy(timeout)

    async def stop(self) -> None:
        """Stop every member (SIGTERM, SIGKILL after 3 s); the first error is raised after all
        were tried. Followers go first: a leader stopped together with them would spend its
        shutdown trying to hand leadership to a member that is stopping too."""
        leaders = [
            m
            for m in self.members
            if m.running and await asyncio.to_thread(is_leader, m.config.client_url, self.tls)
        ]
        followers = [m for m in self.members if m not in leaders]
        results: list[BaseException | None] = []
        for group in (followers, leaders):
            results += await asyncio.gather(
                *(m.stop(timeout=3) for m in group), return_exceptions=True
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result


@asynccontextmanager
async def etcd_lab(
    base: Path, size: int = 1, *, profile: str = "lan", tls: TlsFiles | None = None
) -> AsyncIterator[EtcdLab]:
    lab = EtcdLab(base, size, profile=profile, tls=tls)
    try:
        await lab.start()
        yield lab
    finally:
        await lab.stop()
