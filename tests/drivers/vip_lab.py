"""The VIP lab: two nodes and a client in network namespaces on one bridge (198.18.64.0/24).

```
  cvt-a (node a)          cvt-b (node b)          cvt-c (client)
  cvt-a0 198.18.64.1      cvt-b0 198.18.64.2      cvt-c0 198.18.64.3
  fd00:64::1              fd00:64::2              fd00:64::3
        \\                       |                      /
         cvt-ap ──────────── cvt-br ──────────── cvt-cp        (namespace cvt-sw)
```

The bridge lives in a namespace of its own, so nothing is created in the root namespace and
deleting the four namespaces removes every link. Each node runs a driver host
(``vip_worker.py`` under ``ip netns exec``), as the lab runs agents. MACs are fixed so that
messages can be checked. :func:`vip_lab` cleans up in ``finally``, also after a failed test,
and first removes what a killed earlier run may have left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SWITCH = "cvt-sw"
BRIDGE = "cvt-br"
WORKER = Path(__file__).with_name("vip_worker.py")
NAMES = {"a": 1, "b": 2, "c": 3}


def run(*cmd: str, check: bool = True) -> str:
    """Run a command; its stdout. CalledProcessError (with stderr) when it fails and ``check``."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Node:
    ns: str
    ifname: str
    mac: str
    ipv4: str
    ipv6: str

    def addresses(self) -> set[str]:
        """Addresses (without prefix) on the node's interface."""
        out = json.loads(run("ip", "-n", self.ns, "-j", "addr", "show", "dev", self.ifname))
        return {a["local"] for link in out for a in link.get("addr_info", [])}

    def addr_info(self, ip: str) -> dict[str, Any] | None:
        out = json.loads(run("ip", "-n", self.ns, "-j", "addr", "show", "dev", self.ifname))
        for link in out:
            for info in link.get("addr_info", []):
                if info["local"] == ip:
                    return dict(info)
        return None

    def neighbour(self, ip: str) -> str | None:
        """The MAC this namespace's neighbour table holds for ``ip`` (None: no usable entry)."""
        out = json.loads(run("ip", "-n", self.ns, "-j", "neigh", "show", ip, "dev", self.ifname))
        for entry in out:
            if "lladdr" in entry and "FAILED" not in entry.get("state", []):
                return str(entry["lladdr"])
        return None

    def ping(self, ip: str) -> None:
        run("ip", "netns", "exec", self.ns, "ping", "-c", "1", "-W", "1", ip)


class Worker:
    """The driver host in one namespace (see vip_worker.py for the protocol)."""

    def __init__(self, node: Node, proc: asyncio.subprocess.Process) -> None:
        self.node = node
        self.proc = proc

    async def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 15)
        if not line:
            raise AssertionError(
                f"driver host in {self.node.ns} died (exit {self.proc.returncode})"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def make(self, ident: str, address: str, **kwargs: Any) -> Vip:
        kwargs.setdefault("node_address", self.node.ipv4)
        answer = await self.request(op="make", id=ident, address=address, **kwargs)
        assert answer["ok"], answer
        return Vip(self, ident)

    async def who_has(self, ip: str, timeout: float = 0.2, count: int = 1) -> set[str]:
        answer = await self.request(
            op="who_has", ifname=self.node.ifname, ip=ip, timeout=timeout, count=count
        )
        assert answer["ok"], answer
        return set(answer["value"])

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # our own child, by its pid
            await self.proc.wait()


class Vip:
    """One VipAddress object living in a worker."""

    def __init__(self, worker: Worker, ident: str) -> None:
        self.worker = worker
        self.ident = ident

    async def call(self, method: str) -> dict[str, Any]:
        """The raw answer: ok, value or error/message, began/ended/elapsed."""
        return await self.worker.request(op="call", id=self.ident, method=method)

    async def ok(self, method: str) -> Any:
        answer = await self.call(method)
        assert answer["ok"], f"{self.ident}.{method}(): {answer}"
        return answer["value"]

    async def fails(self, method: str, kind: str = "DriverError") -> str:
        """The DriverError message of a call that must fail; ``kind``: ``NodeFault`` when the
        failure must be one that is not the resource's (rule 7)."""
        answer = await self.call(method)
        assert not answer["ok"], f"{self.ident}.{method}() succeeded: {answer}"
        assert answer["error"] == "DriverError", answer
        assert answer.get("kind") == kind, answer
        return str(answer["message"])

    async def state(self) -> str:
        return str((await self.ok("status"))["state"])

    async def announcing(self) -> bool:
        answer = await self.worker.request(op="announcing", id=self.ident)
        return bool(answer["value"])


@dataclass
class Lab:
    a: Node
    b: Node
    c: Node
    workers: dict[str, Worker]

    @property
    def wa(self) -> Worker:
        return self.workers["a"]

    @property
    def wb(self) -> Worker:
        return self.workers["b"]

    @property
    def wc(self) -> Worker:
        return self.workers["c"]


def _namespaces() -> list[str]:
    return [SWITCH, *(f"cvt-{n}" for n in NAMES)]


def _teardown() -> None:
    existing = run("ip", "netns", "list", check=False)
    for ns in _namespaces():
        if any(line.split()[0] == ns for line in existing.splitlines() if line.strip()):
            run("ip", "netns", "del", ns, check=False)


def _setup() -> dict[str, Node]:
    for ns in _namespaces():
        run("ip", "netns", "add", ns)
    run("ip", "-n", SWITCH, "link", "add", BRIDGE, "type", "bridge")
    run("ip", "-n", SWITCH, "link", "set", BRIDGE, "up")
    nodes = {}
    for name, i in NAMES.items():
        ns, ifname, port = f"cvt-{name}", f"cvt-{name}0", f"cvt-{name}p"
        node = Node(ns, ifname, f"02:00:00:64:00:0{i}", f"198.18.64.{i}", f"fd00:64::{i}")
        run(
            "ip",
            "-n",
            SWITCH,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            ns,
        )
        run("ip", "-n", SWITCH, "link", "set", port, "master", BRIDGE, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "link", "set", ifname, "address", node.mac, "up")
        run("ip", "-n", ns, "addr", "add", f"{node.ipv4}/24", "dev", ifname)
        # nodad: the lab's own addresses must be usable at once, not tentative for a second.
        run("ip", "-n", ns, "addr", "add", f"{node.ipv6}/64", "dev", ifname, "nodad")
        nodes[name] = node
    return nodes


async def _spawn(node: Node) -> Worker:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", node.ns, sys.executable, str(WORKER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Worker(node, proc)


@contextlib.asynccontextmanager
async def vip_lab() -> AsyncIterator[Lab]:
    """Namespaces, bridge and one driver host per namespace; all removed on the way out."""
    _teardown()
    workers: dict[str, Worker] = {}
    try:
        nodes = _setup()
        for name, node in nodes.items():
            workers[name] = await _spawn(node)
        yield Lab(nodes["a"], nodes["b"], nodes["c"], workers)
    finally:
        for worker in workers.values():
            await worker.close()
        _teardown()
