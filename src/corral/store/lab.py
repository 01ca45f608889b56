"""A local etcd cluster on loopback (tests, benchmarks, ``corral demo``): free ports, one data
directory per member, and cleanup of every process it started (by PID), also on failure."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from corral.store.embedded import EmbeddedEtcd, MemberConfig
from corral.store.etcd import EtcdStore


def free_ports(count: int) -> list[int]:
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


class EtcdLab:
    """``size`` members named m0.. on 127.0.0.1 with lan timing (heartbeat 50, election 500)."""

    def __init__(self, base: Path, size: int, heartbeat_ms: int = 50, election_ms: int = 500):
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        peers = {n: f"http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)}
        self.members = [
            EmbeddedEtcd(
                MemberConfig(
                    name=n,
                    data_dir=base / n,
                    client_url=f"http://127.0.0.1:{ports[2 * i]}",
                    peer_url=peers[n],
                    initial_cluster=peers,
                    heartbeat_ms=heartbeat_ms,
                    election_ms=election_ms,
                    token=f"test-{base.name}",
                )
            )
            for i, n in enumerate(names)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.config.client_url for m in self.members]

    def store(self, *members: int, timeout: float = 5.0, attempt_timeout: float = 1.0) -> EtcdStore:
        chosen = [self.endpoints[i] for i in members] if members else self.endpoints
        return EtcdStore(chosen, timeout=timeout, attempt_timeout=attempt_timeout)

    async def start(self) -> None:
        for m in self.members:
            await m.start(wait=False)
        for m in self.members:
            await m.wait_healthy(30)

    async def stop(self) -> None:
        for m in self.members:
            await m.stop(timeout=3)


@asynccontextmanager
async def etcd_lab(base: Path, size: int = 1) -> AsyncIterator[EtcdLab]:
    lab = EtcdLab(base, size)
    try:
        await lab.start()
        yield lab
    finally:
        await lab.stop()
