"""Fixtures for the data-path tests: a lab with VIPs, HAProxy and a balanced API service.

Real namespaces, real agents and embedded etcd, real HAProxy, real VIPs with ARP. Every lab
is torn down (``down --force``) in ``finally``, also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.lab import netns
from corral.lab.client import Record, load
from corral.lab.lab import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("haproxy") is None or shutil.which("curl") is None,
    reason="needs root, HAProxy and curl (network namespaces)",
)
PY = sys.executable
VIPS = ["198.18.5.100", "198.18.5.101", "198.18.5.102"]
HOME = {vip: f"n{i + 1}" for i, vip in enumerate(VIPS)}


def spec_text(fencing: bool) -> str:
    fence = "fencing:\n  power: {agent: fence_ipmilan, action: 'off'}\n" if fencing else ""
    return f"""
cluster: netlab
nodes:
  n1: {{address: 198.18.5.11, roles: [lb]}}
  n2: {{address: 198.18.5.12, roles: [lb]}}
  n3: {{address: 198.18.5.13, roles: [lb]}}
{fence}dns: {{port: 5353}}
defaults:
  health: {{interval: 200ms, timeout: 300ms, rise: 2, fall: 2}}
resources:
  vips:
    vip-set: [{", ".join(v + "/24" for v in VIPS)}]
    on: {{role: lb}}
    with: [haproxy]
    dns: api.netlab.example
  haproxy:
    haproxy: {{stats_port: 8404}}
    on: {{role: lb}}
    health: {{http: "http://{{node.address}}:8404/health"}}
  api:
    systemd: api.service
    health: {{http: "http://{{node.address}}:8080/"}}
    balance: {{port: 80, backend_port: 8080, via: vips}}
"""


class Net:
    """A running lab and what the tests ask of it."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab, self.work = lab, work
        self.why = ""  # what the last settled() found wrong

    @property
    def client_ns(self) -> str:
        return str(self.lab.state()["client"]["ns"])

    @property
    def client_if(self) -> str:
        return str(self.lab.state()["client"]["ifname"])

    def holders(self, vip: str) -> set[str]:
        out = set()
        for name, n in self.lab.state()["nodes"].items():
            if any(a.split("/")[0] == vip for a in netns.addresses(n["ns"], n["ifname"])):
                out.add(name)
        return out

    def get(self, vip: str, path: str = "/") -> str:
        argv = ["curl", "-s", "-m", "1", f"http://{vip}{path}"]
        return netns.run(netns.exec_argv(self.client_ns, argv), check=False).strip()

    def corral(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [PY, "-m", "corral.cli.main", *args]
        if args[:2] != ("spec", "push"):  # push reads the endpoints from the file it pushes
            argv += ["--spec", str(self.lab.spec_file)]
        return subprocess.run(
            netns.exec_argv(self.client_ns, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def events(self) -> str:
        return self.corral("events", "-n", "200").stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.corral("status", "--json").stdout))

    def haproxy(self, node: str, command: str) -> str:
        """One runtime-API command on ``node``'s HAProxy (a path socket, reachable from here)."""
        import socket

        path = Path(self.lab.node(node)["state_dir"]) / "haproxy" / "haproxy.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_admin(self, node: str, backend: str, server: str) -> int:
        """srv_admin_state of ``server`` in ``node``'s HAProxy (0 ready, 1 maint forced by
        corral through the runtime API, 8 drain)."""
        for line in self.haproxy(node, f"show servers state {backend}").splitlines():
            fields = line.split()
            if len(fields) > 6 and fields[3] == server:
                return int(fields[6])
        raise AssertionError(f"no server {server} in {backend} on {node}")

    def settled(self) -> bool:
        self.why = ""
        holders = {v: self.holders(v) for v in VIPS}
        if any(holders[v] != {h} for v, h in HOME.items()):
            self.why = f"VIP holders {holders}"
            return False
        answers = {v: self.get(v) for v in VIPS}
        if not all(a.startswith("ok") for a in answers.values()):
            self.why = f"answers {answers}"
            return False
        text = json.dumps(self.status())
        if any(s in text for s in ('"unhealthy"', '"starting"', '"draining"')):
            self.why = f"status {text[:1500]}"
            return False
        return True

    def wait(self, what: Callable[[], bool], timeout: float = 40.0, why: str = "") -> float:
        start = time.monotonic()
        while not what():
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"not reached within {timeout:g}s: {why} ({self.why})\n{self.events()[-3000:]}"
                )
            time.sleep(0.1)
        return time.monotonic() - start

    def settle(self) -> None:
        for name, n in self.lab.state()["nodes"].items():
            if not n["powered"]:
                self.lab.power_on(name)
        self.wait(self.settled, 60.0, "every VIP at home, every instance healthy")
        time.sleep(1.0)  # every HAProxy applied the last server states

    def load(self, duration: float, *args: str, urls: list[str] | None = None) -> Load:
        return Load(self, urls or [f"http://{v}/" for v in VIPS], duration, list(args))

    def arpwatch(self, vip: str, duration: float) -> subprocess.Popen[bytes]:
        argv = [PY, "-m", "corral.lab.arpwatch", "--iface", self.client_if]
        argv += ["--duration", f"{duration:g}", vip]
        return subprocess.Popen(netns.exec_argv(self.client_ns, argv), stdout=subprocess.PIPE)


class Load:
    """``corral.lab.client`` in the client namespace (bounded by ``duration``)."""

    def __init__(self, net: Net, urls: list[str], duration: float, args: list[str]) -> None:
        self.out = net.work / f"load-{time.monotonic_ns()}.json"
        ready = self.out.with_suffix(".ready")
        argv = [PY, "-m", "corral.lab.client", *args, "--duration", f"{duration:g}"]
        argv += ["--out", str(self.out), "--ready", str(ready), *urls]
        self.proc = subprocess.Popen(netns.exec_argv(net.client_ns, argv))
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and self.proc.poll() is None, "client not started"
            time.sleep(0.02)

    def records(self) -> list[Record]:
        assert self.proc.wait(timeout=120) == 0
        return load(self.out)[0]


def arp_samples(watch: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """Every sample of the ARP watch: ``{"t", "ip", "macs"}``."""
    out, _ = watch.communicate(timeout=120)
    samples = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert samples, "the ARP watch took no sample"
    return samples


def two_answers(watch: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """The ARP samples in which more than one MAC answered for the VIP."""
    return [s for s in arp_samples(watch) if len(s.get("macs", [])) > 1]


def _net(fencing: bool) -> Iterator[Net]:
    work = Path(tempfile.mkdtemp(prefix="crlt-", dir="/tmp"))  # short: unix socket paths
    (work / "spec.yaml").write_text(spec_text(fencing))
    lab: Lab | None = None
    try:
        for attempt in (1, 2):
            lab = Lab.up(work / "spec.yaml", work / "lab", timeout=90.0)
            net = Net(lab, work)
            try:
                net.settle()
                break
            except AssertionError as exc:
                # Seen once in a full-suite run: a fresh lab that never settled (the cause is
                # not found yet; the message says which condition failed). One rebuild, loudly.
                if attempt == 2:
                    raise
                print(f"netlab: the lab did not settle, rebuilding it once: {exc}")
                lab.down(force=True)
        yield net
    finally:
        if lab is not None:
            lab.down(force=True)
        else:
            Lab(work / "lab").down(force=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def fenced_net() -> Iterator[Net]:
    """The lab with the lab fence device as the nodes' power switch."""
    yield from _net(fencing=True)


@pytest.fixture(scope="module")
def unfenced_net() -> Iterator[Net]:
    """The lab without fence devices: takeover only through lease expiry."""
    yield from _net(fencing=False)
