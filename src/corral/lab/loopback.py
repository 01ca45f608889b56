"""Real agents (subprocesses) on loopback over a real 3-member etcd, for the agent tests and
bench/failover_loopback.py. Each node gets its own 127.0.0.x address; services are small HTTP
apps (tests/agent/app.py) started by the process driver. Everything started is stopped by PID
(agents, their guards, the services they left, etcd), also when a test fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from corral.fileio import private_dir
from corral.pki import init_bundle
from corral.pki.ca import issue, write_identity
from corral.pki.identity import ROOT
from corral.records.view import members_of
from corral.store import Keys, Store
from corral.store.lab import EtcdLab, free_ports
from corral.store.tls import TlsFiles

APP = Path(__file__).with_name("app.py")  # the stand-in HTTP service
NODES = {"n1": "127.0.0.11", "n2": "127.0.0.12", "n3": "127.0.0.13"}


# grace 2 s, not the 10 s default: a service that never passes (the 500 tests) is declared
# unhealthy, restarted and counted every 2 s, so the threshold tests take seconds, not 30
FAST_CHECKS = "interval: 200ms, timeout: 300ms, rise: 1, fall: 2, grace: 2s"


def spec_text(
    base: Path,
    web_port: int,
    api_port: int,
    check: str = FAST_CHECKS,
    gossip_port: int = 7946,
    bundle: Path | None = None,
    http_port: int = 7948,
) -> str:
    """``bundle``: the store over TLS, node certificates issued from this CA bundle.
    ``http_port``: the agents' HTTP API (each on its node's address)."""
    py = sys.executable
    store = (
        f"{{etcd: {{endpoints: [https://127.0.0.1:1], tls: {{bundle: {bundle}}}}}}}"
        if bundle is not None
        else "{etcd: {endpoints: [http://127.0.0.1:1]}}"
    )
    web_cmd = f"{py} {APP} {{node.address}} {web_port} {base}/web-{{node.name}}.mode"
    api_cmd = f"{py} {APP} {{node.address}} {api_port} {base}/api-{{node.name}}.mode"
    return f"""
cluster: agenttest
profile: lan
store: {store}
gossip: {{port: {gossip_port}}}
api: {{port: {http_port}}}
nodes:
  n1: {{address: 127.0.0.11}}
  n2: {{address: 127.0.0.12}}
  n3: {{address: 127.0.0.13}}
defaults:
  failure: {{migration_threshold: 3, failure_timeout: 10m}}
resources:
  web:
    process: {{command: "{web_cmd}", stop_timeout: 1s}}
    health: {{http: "http://{{node.address}}:{web_port}/", {check}}}
  api:
    process: {{command: "{api_cmd}", stop_timeout: 1s}}
    mode: active-passive
    health: {{http: "http://{{node.address}}:{api_port}/", {check}}}
"""


def _pid_of(pidfile: Path) -> int | None:
    """A pid from a guard pid file (a number) or a process-driver pid file (JSON)."""
    try:
        text = pidfile.read_text().strip()
        return int(json.loads(text)["pid"]) if text.startswith("{") else int(text)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _processes_under(base: Path) -> list[int]:
    """Processes of this lab that its pid files may have missed: those whose command line
    names a file under ``base`` (every service of the lab gets its mode file there; ``base``
    is this lab's own temporary directory, so no other process matches)."""
    marker = str(base).encode() + b"/"  # as spec_text puts it in commands
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _lab_pki(base: Path) -> TlsFiles:
    """A CA in ``base/ca`` and an identity valid for 127.0.0.1 as server and client (the etcd
    members' and the tests' own)."""
    ca = init_bundle(base / "ca", "agenttest", time.time())
    cert, key = issue(
        ca, ROOT, ou="admin", now=time.time(), days=1, addresses=("127.0.0.1",), server=True
    )
    return TlsFiles(*(str(p) for p in write_identity(base / "member-tls", "member", ca, cert, key)))


class Cluster:
    def __init__(
        self, base: Path, checks: str = FAST_CHECKS, *, verbose: bool = True, tls: bool = False
    ) -> None:
        """``verbose``: agents log every decision (tests read them when something fails;
        benchmarks of idle CPU turn it off, as a deployed agent runs). ``tls``: etcd requires
        client certificates; a CA bundle in ``base/ca`` from which the agents issue theirs,
        and :attr:`client_tls` an admin's for the tests."""
        self.verbose = verbose
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        bundle = base / "ca" if tls else None
        self.client_tls = _lab_pki(base) if tls else None
        self.etcd = EtcdLab(base / "etcd", 3, tls=self.client_tls)
        self.web_port, self.api_port, self.gossip_port, self.http_port = free_ports(4)
        self.spec_file = base / "spec.yaml"
        self.spec_file.write_text(
            spec_text(
                base,
                self.web_port,
                self.api_port,
                checks,
                self.gossip_port,
                bundle,
                self.http_port,
            )
        )
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def add_alerts(self, sinks: dict[str, str]) -> None:
        """Before :meth:`start`: alert sinks (name -> its YAML flow mapping) and a fence
        device that always works (the nodes' power switch: the tests power nodes off
        themselves), so a lost node is fenced, as with a real device, and not waited for."""
        fence = self.base / "fence.sh"
        fence.write_text("#!/bin/sh\ncat > /dev/null\nexit 0\n")
        fence.chmod(0o755)
        lines = "".join(f"  {name}: {flow}\n" for name, flow in sinks.items())
        extra = f"fencing:\n  power: {{agent: {fence}, timeout: 5s}}\nalerts:\n{lines}"
        self.spec_file.write_text(self.spec_file.read_text() + extra)

    @property
    def etcd_arg(self) -> str:
        return ",".join(self.etcd.endpoints)

    def state_dir(self, node: str) -> Path:
        return self.base / "state" / node

    async def start(self) -> None:
        await self.etcd.start()
        for node in NODES:
            self.start_agent(node)

    def start_agent(self, node: str, *options: str) -> None:
        private_dir(self.state_dir(node))
        with open(self.base / f"agent-{node}.log", "ab") as log:
            self.agents[node] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "corral.cli.main",
                    "agent",
                    "--spec",
                    str(self.spec_file),
                    "--node",
                    node,
                    "--etcd",
                    self.etcd_arg,
                    "--state-dir",
                    str(self.state_dir(node)),
                    *(["-v"] if self.verbose else []),
                    *options,
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def stop_agent(self, node: str) -> None:
        """SIGTERM, as systemd stops a unit: the agent hands its lease to the guard."""
        self.agents[node].send_signal(signal.SIGTERM)
        self.agents[node].wait(timeout=30)

    def kill_agent(self, node: str) -> None:
        self.agents[node].send_signal(signal.SIGKILL)
        self.agents[node].wait()

    def serving(self, port: int) -> dict[str, str]:
        """node -> body for every node whose service on ``port`` answers 200 right now."""
        out = {}
        for node, address in NODES.items():
            try:
                with urllib.request.urlopen(f"http://{address}:{port}/", timeout=0.3) as r:
                    out[node] = r.read().decode()
            except (OSError, urllib.error.URLError):
                pass
        return out

    def service_pid(self, node: str, name: str) -> int | None:
        """The pid (and process group) of a service, from the process driver's pid file."""
        return _pid_of(self.state_dir(node) / "run" / f"{name}.pid")

    async def wait_settled(self, store: Store, limit: float) -> None:
        """Until every node is registered and every agent's gossip view holds every node
        alive: a node killed before its peers saw it alive is not lost to them, and is not
        fenced (:class:`TimeoutError` after ``limit`` seconds)."""
        keys, deadline = Keys("agenttest"), time.monotonic() + limit
        while time.monotonic() < deadline:
            kvs = (await store.range(keys.root_prefix)).kvs
            registered = {kv.key for kv in kvs} >= {keys.node(n) for n in NODES}
            views = members_of(keys, kvs)
            alive = [{r.name for r in v if r.state == "alive"} for v in views.values()]
            if registered and set(views) == set(NODES) and all(a >= set(NODES) for a in alive):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the lab did not settle within {limit:g}s")

    def power_off(self, node: str) -> None:
        """The node loses power: its agent, its lease guard and its services killed -9."""
        if node in self.agents and self.agents[node].poll() is None:
            self.kill_agent(node)
        self._kill_left(node)

    def _kill_left(self, node: str) -> None:
        """The guard and the services an agent left running (by their pid files)."""
        pidfiles = [
            self.state_dir(node) / "guard.pid",
            *(self.state_dir(node) / "run").glob("*.pid"),
        ]
        for pidfile in pidfiles:
            pid = _pid_of(pidfile)
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                if pidfile.parent.name == "run":  # a service: its whole process group
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)

    async def stop(self) -> None:
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for node in NODES:  # the guards and the services the agents left running
            self._kill_left(node)
        await self.etcd.stop()
        for pid in _processes_under(self.base):  # a service whose pid file was not written yet
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0)
