"""One RabbitMQ node run by corral (shell): files, process, cluster commands, and its report.

:class:`RabbitServer` runs one broker, optionally inside a network namespace, from the
binaries in ``/usr/lib/rabbitmq/bin`` (the ``/usr/sbin`` wrappers switch to the ``rabbitmq``
user and drop the per-node environment this class sets). Everything the node owns lives under
``config.base``: ``home/.erlang.cookie`` (the cookie, resolved from its secret reference at
:meth:`RabbitServer.prepare`, mode 0400: Erlang reads it from ``$HOME``, never from the command
line, so ``ps`` never shows it), ``rabbitmq.conf``, ``mnesia/`` (the data), ``log/``, and
``identity`` (the id corral gives this data directory when it first creates it: a node with
new disks reports a new identity, :class:`~corral.core.rabbit.NodeReport`).

Contract:

- :meth:`start` spawns the node's own ``epmd`` first (one per namespace: the broker would
  otherwise start a daemon that outlives it) and then the broker, in a new process group;
  both are children of this process and are ended by pid (:meth:`stop`, :meth:`kill`,
  :meth:`close`), never by name.
- A fresh node joins ``peer`` through classic peer discovery at its first boot (:meth:`join`:
  no ``rabbitmqctl`` call); a node whose data belongs to a cluster that forgot it has that
  data moved aside (``mnesia.forgotten-<time>``, kept, never deleted) first.
- ``rabbitmqctl`` costs 2-5 s and ~62 MB a call on this machine kind: it is used only for the
  cluster commands (:meth:`forget`, :meth:`force_boot`, :meth:`grow`) and for
  :meth:`cluster_status`, never for health (:mod:`corral.drivers.rabbitmq_health`).
- Failures raise :class:`~corral.drivers.base.DriverError` naming the node and the command,
  with the command's last lines of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from corral.core.rabbit import BrokerState, NodeReport, corral_name, erlang_name, erlang_nodes
from corral.drivers._exec import CommandTimeout, Completed, run_command
from corral.drivers.base import DriverError
from corral.drivers.secrets import resolve
from corral.spec.profiles import Timing
from corral.spec.secrets import SecretRef

BIN = Path("/usr/lib/rabbitmq/bin")
EPMD = "/usr/bin/epmd"
CTL_TIMEOUT = 60.0
MIN_TICKTIME = 10


def net_ticktime(timing: Timing) -> int:
    """Erlang's ``net_ticktime`` for a timing profile: ``max(10, ceil(4 x lease_ttl))``.

    Erlang declares a peer down after ``net_ticktime`` to ``1.25 x net_ticktime`` of silence
    (it ticks every quarter of it). One tick period (``net_ticktime / 4``) covers a whole node
    lease, so a stall that does not cost a node its corral lease does not cost it its place
    in the RabbitMQ cluster either (no ``pause_minority`` flapping on a loaded machine); and the
    partition is noticed within about five lease TTLs, instead of the default 60 s (measured on
    this machine kind: 73.5 s at 60 s, 12.3 s at 10 s). 10 s is the floor: below it a busy
    2-core node's scheduler stalls may read as partitions. lan (lease 3 s): 12 s; local: 10 s;
    wan (lease 12 s): 48 s."""
    return max(MIN_TICKTIME, math.ceil(4 * timing.lease_ttl))


@dataclass(frozen=True)
class BrokerConfig:
    """One node's settings. ``node``: corral's node name, also the host name of the Erlang
    node ``rabbit@<node>`` (it must resolve to ``address`` where the node runs, and every
    peer's name to its address: :func:`write_netns_hosts`). ``user``/``password``: the
    account a fresh node creates (``default_user``), which the health check and clients use;
    without a password the node keeps RabbitMQ's ``guest``, which may log in from loopback
    only."""

    node: str
    address: str
    base: Path
    cookie: SecretRef
    net_ticktime: int = MIN_TICKTIME
    netns: str | None = None
    amqp_port: int = 5672
    dist_port: int = 25672
    partition_handling: str = "pause_minority"
    user: str = "corral"
    password: SecretRef | None = None
    extra_conf: Mapping[str, str] = field(default_factory=dict)

    @property
    def erlang(self) -> str:
        return erlang_name(self.node)


def write_netns_hosts(netns: str, names: Mapping[str, str]) -> Path:
    """``/etc/netns/<netns>/hosts`` mapping each name to its address (``ip netns exec`` mounts
    it over ``/etc/hosts`` for every process it starts in that namespace)."""
    path = Path("/etc/netns") / netns / "hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in sorted(names.items()))]
    path.write_text("\n".join(lines) + "\n")
    return path


def remove_netns_hosts(netns: str) -> None:
    path = Path("/etc/netns") / netns
    with contextlib.suppress(FileNotFoundError):
        (path / "hosts").unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


class RabbitServer:
    """One RabbitMQ node (see the module docstring)."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.base = config.base
        self.mnesia = config.base / "mnesia"
        self._broker: asyncio.subprocess.Process | None = None
        self._epmd: asyncio.subprocess.Process | None = None
        self._state: BrokerState = "stopped"
        self._password: str | None = None
        self._since = time.time()

    # --- files ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Create the node's directories, its configuration and its cookie file."""
        for sub in ("home", "log", "mnesia"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        cookie = await resolve(self.config.cookie, f"rabbitmq {self.config.node}: erlang_cookie")
        path = self.base / "home" / ".erlang.cookie"
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(cookie)
        path.chmod(0o400)  # Erlang refuses a cookie that others may read
        self._password = None
        if self.config.password is not None:
            what = f"rabbitmq {self.config.node}: password"
            self._password = await resolve(self.config.password, what)
        self._write_conf(None)
        (self.base / "enabled_plugins").write_text("[].\n")

    @property
    def login(self) -> tuple[str, str]:
        """(user, password) clients and the health check log in with, once :meth:`prepare`
        resolved the password; RabbitMQ's ``guest`` without one."""
        if self._password is None:
            return "guest", "guest"
        return self.config.user, self._password

    def _write_conf(self, join: str | None) -> None:
        lines = {
            "listeners.tcp.default": f"{self.config.address}:{self.config.amqp_port}",
            "cluster_partition_handling": self.config.partition_handling,
            "net_ticktime": str(self.config.net_ticktime),
            "loopback_users": "none",
            **self.config.extra_conf,
        }
        if join is not None:  # a fresh node joins this peer at its first boot
            lines["cluster_formation.peer_discovery_backend"] = "classic_config"
            lines["cluster_formation.classic_config.nodes.1"] = erlang_name(join)
        if self._password is not None:
            lines["default_user"] = self.config.user
            lines["default_pass"] = self._password
        text = "".join(f"{k} = {v}\n" for k, v in lines.items())
        path = self.base / "rabbitmq.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a secret
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def env(self) -> dict[str, str]:
        """The per-node environment of the broker and of every CLI call."""
        c, b = self.config, self.base
        return {
            "PATH": "/usr/lib/rabbitmq/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(b / "home"),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": c.erlang,
            "RABBITMQ_NODE_IP_ADDRESS": c.address,
            "RABBITMQ_NODE_PORT": str(c.amqp_port),
            "RABBITMQ_DIST_PORT": str(c.dist_port),
            "RABBITMQ_BASE": str(b),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(b),
            "RABBITMQ_MNESIA_DIR": str(self.mnesia),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "broker.pid"),
            "RABBITMQ_LOGS": str(b / "log" / "rabbit.log"),
        }

    def identity(self) -> str:
        """The data directory's id ("" when the node holds no data)."""
        try:
            return (self.base / "identity").read_text().strip()
        except FileNotFoundError:
            return ""

    def members_on_disk(self) -> frozenset[str]:
        """The cluster nodes the data knows (RabbitMQ's ``cluster_nodes.config``), as corral
        names; empty when there is no data."""
        try:
            text = (self.mnesia / "cluster_nodes.config").read_text()
        except FileNotFoundError:
            return frozenset()
        lists = erlang_nodes(text)
        return frozenset(corral_name(n) for n in (lists[0] if lists else []))

    def report(self, state: BrokerState, running: frozenset[str] = frozenset()) -> NodeReport:
        """This node's report for the store (no CLI call: the state comes from the health
        check, the members from the data directory)."""
        if state != self._state:
            self._state, self._since = state, time.time()
        members = self.members_on_disk()
        if self.identity() and not members:
            members = frozenset({self.config.node})  # a one-node cluster writes none yet
        return NodeReport(self.config.node, state, self.identity(), members, running, self._since)

    # --- processes --------------------------------------------------------------------------

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if self.config.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.config.netns, *argv]

    @property
    def alive(self) -> bool:
        """The broker process (the start script and its VM) is running."""
        return self._broker is not None and self._broker.returncode is None

    @property
    def pid(self) -> int | None:
        return self._broker.pid if self.alive and self._broker is not None else None

    def processes(self) -> list[psutil.Process]:
        """The broker's live processes (its start script, the VM, its helpers)."""
        if self._broker is None:
            return []
        out = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self._broker.pid:
                    out.append(proc)
        return out

    def rss(self) -> int:
        """Resident memory of the broker's processes, bytes."""
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    async def _spawn(self, argv: Sequence[str], log: str) -> asyncio.subprocess.Process:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        out = os.open(self.base / "log" / log, flags, 0o600)  # the child keeps its copy
        try:
            return await asyncio.create_subprocess_exec(
                *self._argv(argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.env(),
                cwd=str(self.base),
                start_new_session=True,
            )
        except OSError as exc:
            raise DriverError(f"rabbitmq {self.config.node}: cannot run {argv[0]}: {exc}") from exc
        finally:
            os.close(out)

    async def _ensure_epmd(self) -> None:
        if self._epmd is None or self._epmd.returncode is not None:
            self._epmd = await self._spawn([EPMD], "epmd.log")
            await asyncio.sleep(0.2)  # bound before the VM asks it

    async def start(self) -> None:
        """Start the broker from its data (a running one is left alone)."""
        if self.alive:
            return
        if not self.identity():
            (self.base / "identity").write_text(f"{uuid.uuid4()}\n")
        await self._ensure_epmd()
        self._broker = await self._spawn([str(BIN / "rabbitmq-server")], "server.log")

    async def join(self, peer: str, *, reset: bool = False) -> None:
        """Boot as a member of ``peer``'s cluster. ``reset``: the data belongs to a cluster
        that forgot this node; it is moved aside (kept) first. A node with data that was not
        reset rejoins its own cluster instead (peer discovery runs on fresh nodes only)."""
        if self.alive:
            raise DriverError(f"rabbitmq {self.config.node}: join {peer} while running")
        if reset and self.mnesia.exists():
            aside = self.base / f"mnesia.forgotten-{int(time.time())}"
            self.mnesia.rename(aside)
            self.mnesia.mkdir()
            with contextlib.suppress(FileNotFoundError):
                (self.base / "identity").unlink()
        self._write_conf(peer)
        await self.start()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly (SIGTERM: the start script runs ``rabbitmqctl stop``); SIGKILL of the
        process group after ``timeout``."""
        proc = self._broker
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
        await self._reap_group(proc.pid)

    async def kill(self) -> None:
        """kill -9 of the broker's process group (a crash, or a fence of the service)."""
        proc = self._broker
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        await self._reap_group(proc.pid)

    async def _reap_group(self, pgid: int) -> None:
        """Wait until no process of the broker's group is left (the VM outlives the script
        by a moment); SIGKILL what remains after 10 s."""
        for i in range(200):
            try:
                os.killpg(pgid, signal.SIGKILL if i == 100 else 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop the broker (SIGKILL: this is teardown) and the node's epmd."""
        await self.kill()
        epmd = self._epmd
        if epmd is not None and epmd.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                epmd.kill()
            await epmd.wait()

    # --- the CLI (sparingly) ----------------------------------------------------------------

    async def ctl(self, tool: str, *args: str, timeout: float = CTL_TIMEOUT) -> Completed:
        """Run ``tool`` (rabbitmqctl, rabbitmq-queues) against this node; DriverError with
        its output when it fails."""
        argv = [str(BIN / tool), "-n", self.config.erlang, *args]
        try:
            done = await run_command(self._argv(argv), timeout=timeout, env=self.env())
        except CommandTimeout as exc:
            raise DriverError(f"rabbitmq {self.config.node}: {exc}") from None
        if done.returncode != 0:
            raise DriverError(
                f"rabbitmq {self.config.node}: {tool} {' '.join(args)} exited "
                f"{done.returncode}: {done.summary()}"
            )
        return done

    async def forget(self, node: str) -> None:
        """``forget_cluster_node``: drop ``node`` from the cluster and from every quorum
        queue's membership (run on this running member)."""
        await self.ctl("rabbitmqctl", "forget_cluster_node", erlang_name(node))

    def force_booted(self, outage: int) -> bool:
        """This node already acted on the force-boot claim of ``outage``."""
        return (self.base / f"force-boot-{outage}").exists()

    async def force_boot(self, outage: int) -> bool:
        """Act once on the force-boot claim of ``outage`` (the decision repeats while the
        node boots): stop the broker if it waits for its peers, ``rabbitmqctl force_boot``
        (its next boot does not wait for them), start it; a marker in the node's directory
        remembers the outage, so a repeated decision does nothing. False: done before."""
        if self.force_booted(outage):
            return False
        await self.stop()
        await self.ctl("rabbitmqctl", "force_boot")
        (self.base / f"force-boot-{outage}").write_text(f"{time.time()}\n")
        await self.start()
        return True

    async def grow(self) -> None:
        """Add this node to every quorum queue it is not a member of."""
        await self.ctl("rabbitmq-queues", "grow", self.config.erlang, "all")

    async def cluster_status(self) -> tuple[frozenset[str], frozenset[str]]:
        """(members, running members) as this running node sees them (one CLI call)."""
        done = await self.ctl("rabbitmqctl", "cluster_status", "--formatter", "json")
        data = json.loads(done.stdout)
        members = frozenset(corral_name(n) for n in data.get("disk_nodes", []))
        running = frozenset(corral_name(n) for n in data.get("running_nodes", []))
        return members, running
