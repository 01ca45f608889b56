"""A Galera lab for tests: three node namespaces on one bridge, a GaleraServer per node.

```
  cgl-1 198.18.72.1     cgl-2 198.18.72.2     cgl-3 198.18.72.3
        \\                     |                    /
         cgl-1p ─────────── cgl-br ─────────── cgl-3p          (namespace cgl-sw)
```

:func:`galera_lab` removes what a killed earlier run left, builds the namespaces, and on the
way out (also after a failed test) stops every server it made (SIGKILL by pid after a short
grace) and deletes the namespaces. mariadbd runs as root with everything under ``tmp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from corral.drivers.galera import GaleraServer, GaleraStatus
from corral.drivers.galera_conf import GaleraSettings
from corral.lab import netns
from corral.spec.secrets import SecretRef

SWITCH, BRIDGE, PREFIX = "cgl-sw", "cgl-br", "cgl-"
SUBNET = "198.18.72"
# small and quick: a test cluster, not a database (the default pool is 128 MB per server)
OPTIONS = (
    ("innodb_buffer_pool_size", "32M"),
    ("innodb_log_file_size", "16M"),
    ("performance_schema", "OFF"),
    ("innodb_flush_log_at_trx_commit", "2"),
)
PROVIDER_OPTIONS = "gcache.size=16M; pc.recovery=TRUE"


def ns_of(i: int) -> str:
    return f"{PREFIX}{i}"


def address_of(i: int) -> str:
    return f"{SUBNET}.{i}"


def _namespaces(count: int) -> list[str]:
    return [SWITCH, *(ns_of(i) for i in range(1, count + 1))]


def teardown(count: int = 3) -> None:
    netns.remove_all(_namespaces(count), timeout=10)


def setup(count: int = 3) -> None:
    netns.add_star(SWITCH, BRIDGE, {
        ns_of(i): (f"cgl-{i}p", f"cgl-{i}0", f"{address_of(i)}/24") for i in range(1, count + 1)
    })  # fmt: skip


def write_secret(path: Path, value: str) -> SecretRef:
    """A root-only secret file and the reference to it (what an operator would give)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return SecretRef(file=str(path))


@dataclass
class GaleraLab:
    tmp: Path
    servers: list[GaleraServer]

    def server(self, i: int) -> GaleraServer:
        return self.servers[i - 1]


def make_servers(tmp: Path, count: int = 3, **timeouts: float) -> list[GaleraServer]:
    sst = write_secret(tmp / "sst.pw", "sst-secret-1")
    check = write_secret(tmp / "check.pw", "check-secret-1")
    peers = tuple(address_of(i) for i in range(1, count + 1))
    servers = []
    for i in range(1, count + 1):
        settings = GaleraSettings(
            node=f"db{i}",
            address=address_of(i),
            peers=peers,
            cluster="corral-test",
            base_dir=tmp / f"db{i}",
            sst_password=sst,
            check_password=check,
            provider_options=PROVIDER_OPTIONS,
            run_as="root",
            netns=ns_of(i),
            options=OPTIONS,
        )
        servers.append(GaleraServer(settings, **timeouts))
    return servers


async def kill9(server: GaleraServer) -> None:
    """SIGKILL the server's mariadbd (a power cut of the process), and wait for it to end."""
    pid = await server.pid()
    assert pid is not None, f"{server.name} does not run"
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if not server.running():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{server.name}: pid {pid} survived SIGKILL")


async def wait_for(
    server: GaleraServer, what: Callable[[GaleraStatus], bool], timeout: float = 60.0
) -> GaleraStatus:
    """The server's status once ``what`` holds; AssertionError with the last one after
    ``timeout`` (a bound against a hang, not a speed target)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await server.status()
        if what(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{server.name}: still {status} after {timeout:g}s")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def galera_lab(tmp: Path, count: int = 3, **timeouts: float) -> AsyncIterator[GaleraLab]:
    teardown(count)
    servers: list[GaleraServer] = []
    try:
        setup(count)
        servers = make_servers(tmp, count, **timeouts)
        yield GaleraLab(tmp, servers)
    finally:
        for server in servers:
            server.stop_timeout = min(server.stop_timeout, 3.0)
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)
        teardown(count)
