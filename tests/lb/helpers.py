"""Real parts for the HAProxy tests: backend apps on 127.0.0.x, a spec around them, a client.

Addresses: the LB node is 127.0.0.160 (stats), VIPs 127.0.0.150-151, backends
127.0.0.161-164. Ports are picked free on every address that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.spec.loader import load_spec_text
from corral.spec.model import Spec

APP = Path(__file__).resolve().parents[2] / "src" / "corral" / "lab" / "app.py"
LB = "127.0.0.160"
VIPS = ("127.0.0.150", "127.0.0.151")
BACKENDS = ("127.0.0.161", "127.0.0.162", "127.0.0.163")
SPARE = "127.0.0.164"


def free_port(addresses: tuple[str, ...]) -> int:
    """A TCP port free on every one of ``addresses`` (bounded tries)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((addresses[0], 0))
            port = int(s.getsockname()[1])
        ok = True
        for addr in addresses[1:]:
            with socket.socket() as s:
                try:
                    s.bind((addr, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port")


def spec_text(
    port: int,
    backend_port: int,
    stats_port: int,
    *,
    extra: str = "",
    url_path: str = "/",
    maxconn: int = 4096,
) -> str:
    return f"""
cluster: chp
nodes:
  lb1: {{address: {LB}, roles: [lb]}}
  n1: {{address: {BACKENDS[0]}, roles: [api]}}
  n2: {{address: {BACKENDS[1]}, roles: [api]}}
  n3: {{address: {BACKENDS[2]}, roles: [api], kind: remote}}
resources:
  vips:
    vip-set: [{VIPS[0]}/8, {VIPS[1]}/8]
    on: {{role: lb}}
  haproxy:
    haproxy: {{stats_port: {stats_port}, maxconn: {maxconn}}}
    on: {{role: lb}}
  api:
    process: "true"
    on: {{role: api}}
    health: {{http: "http://{{node.address}}:{backend_port}{url_path}", interval: 300ms, timeout: 250ms, rise: 1, fall: 2}}
    balance: {{port: {port}, via: vips, backend_port: {backend_port}}}
{extra}"""


def make_spec(text: str) -> Spec:
    return load_spec_text(text)


@dataclass
class App:
    host: str
    port: int
    mode_file: Path
    proc: subprocess.Popen[bytes] | None = None

    def set_mode(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), self.host, str(self.port), str(self.mode_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"app on {self.host}:{self.port} did not start")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            self.proc.wait(5)


@dataclass
class Result:
    status: int
    body: str


async def get(host: str, port: int, path: str = "/", timeout: float = 2.0) -> Result:
    """One HTTP/1.0 GET; status 0 and the error as body when it fails."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            data = await reader.read()
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        return Result(int(head.split()[1]), body)
    except (OSError, TimeoutError, IndexError, ValueError) as exc:
        return Result(0, repr(exc))
    finally:
        if writer is not None:
            writer.close()


@dataclass
class Load:
    """A bounded client loop: about ``rate`` requests/s for ``seconds`` (count bounded too)."""

    results: list[Result] = field(default_factory=list)

    async def run(self, host: str, port: int, *, rate: float = 200, seconds: float = 2.0) -> None:
        gap = 1 / rate
        deadline = time.monotonic() + seconds
        for _ in range(int(rate * seconds)):
            if time.monotonic() > deadline + seconds:  # hard bound in time as well
                break
            started = time.monotonic()
            self.results.append(await get(host, port))
            await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status != 200]


def hits(results: list[Result], host: str) -> int:
    return sum(1 for r in results if r.status == 200 and r.body.strip().endswith(" " + host))
