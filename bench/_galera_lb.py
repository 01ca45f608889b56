"""The client side of ``bench/stateful.py``: a load-balancer namespace on the Galera lab's
switch running a real HAProxy whose configuration corral renders (:mod:`corral.lb.config`,
through :class:`~corral.drivers.haproxy.HaproxyService`) and whose server states follow the
writer record the way every LB agent applies them (:class:`~corral.agent.lb.LbDuty`: view,
:func:`~corral.core.lbstate.desired_servers`, the runtime API), and a client process in that
namespace writing through the VIP.

```
  cgb-1 .1     cgb-2 .2     cgb-3 .3     cgb-lb .10 (+ the VIP .100: haproxy, the client)
      \\          |            |            /
       '------- cgb-br (namespace cgb-sw) -'
```

The client (:data:`CLIENT`, run with ``ip netns exec``) inserts ids base + 1, + 2, ... into
``bench.w`` at a fixed rate, one at a time on one connection through HAProxy (1 s connect,
read and write timeouts: a stalled commit is a failure, never a hang), and prints
``a <id> <monotonic>`` for each acknowledged write (CLOCK_MONOTONIC is the machine's, the
same in every namespace) and ``f <id> <monotonic>`` for each failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from corral.agent.lb import LbDuty
from corral.core.clock import ManualClock
from corral.drivers.haproxy import HaproxyService
from corral.lab import netns
from corral.spec import Spec
from corral.store import Keys, Store

LB_NS, LB_PORT, LB_IF = "cgb-lb", "cgb-lbp", "cgb-lb0"
USER, PASSWORD = "bench", "bench-pw-1"

CLIENT = r"""
import sys, time, pymysql
vip, rate, user, pw, base = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conn, i, period = None, int(base), 1.0 / rate
nxt = time.monotonic()
while True:
    i += 1
    try:
        if conn is None:
            conn = pymysql.connect(host=vip, port=3306, user=user, password=pw, autocommit=True,
                                   connect_timeout=1, read_timeout=1, write_timeout=1)
        conn.cursor().execute("INSERT INTO bench.w VALUES (%s)", (i,))
        print("a", i, time.monotonic(), flush=True)
    except Exception:
        print("f", i, time.monotonic(), flush=True)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
        time.sleep(0.01)
    nxt = max(nxt + period, time.monotonic() - period)
    time.sleep(max(0.0, nxt - time.monotonic()))
"""


def setup_lb(switch: str, bridge: str, subnet: str) -> str:
    """The LB namespace on the lab's switch, its address ``.10`` and the VIP ``.100``."""
    netns.add_namespace(LB_NS)
    netns.add_veth(switch, LB_PORT, LB_NS, LB_IF, bridge)
    netns.add_address(LB_NS, LB_IF, f"{subnet}.10/24")
    netns.add_address(LB_NS, LB_IF, f"{subnet}.100/24")
    netns.set_link(LB_NS, LB_IF, up=True)
    return f"{subnet}.100"


def teardown_lb() -> None:
    netns.remove_all([LB_NS], timeout=10)


def wrapper(tmp: Path) -> Path:
    """An ``haproxy`` that runs in the LB namespace (``ip netns exec`` execs: same pid)."""
    path = tmp / "haproxy-in-lb"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {LB_NS} /usr/sbin/haproxy "$@"\n')
    path.chmod(0o755)
    return path


class Balancer:
    """The LB agent's duty over a real HAProxy: ``sync`` reads the store (registrations,
    fences, reports, the writer record) and applies the server states, as
    ``Agent._network`` does at every round its store watch wakes."""

    def __init__(self, tmp: Path, spec: Spec, store: Store, keys: Keys) -> None:
        from corral.core.node import NodeContext

        node = spec.nodes["lb1"]
        ctx = NodeContext("lb1", str(node.address), state_dir=tmp / "lb1")
        self.spec, self.store = spec, store
        self.service = HaproxyService(
            "lb", spec.resources["lb"], ctx, lambda: spec,
            haproxy=str(wrapper(tmp)), run_dir=tmp / "lb1" / "run",
        )  # fmt: skip
        self.duty = LbDuty(store, keys, "lb1", ManualClock())
        self.states: dict[str, str] = {}

    async def start(self) -> None:
        await self.service.start()
        await self.sync()

    async def sync(self) -> float:
        """One sync; returns when it ended (monotonic)."""
        view = await self.duty.view(self.spec)
        await self.duty.sync(self.spec, self.service, None, set(), view)
        self.states = dict(view.writers)
        return time.monotonic()

    async def follow(self, stop: asyncio.Event, every: float = 0.05) -> None:
        """Sync whenever the store changed (the agent's watch; polled here every ``every``)."""
        seen = -1
        while not stop.is_set():
            revision = getattr(self.store, "revision", 0)
            if revision != seen:
                seen = revision
                with contextlib.suppress(Exception):
                    await self.sync()
            await asyncio.sleep(every)

    async def stop(self) -> None:
        self.service.stop_timeout = 2.0
        await self.service.stop()


class Load:
    """The client process and what it said: acknowledged ids and times, failures."""

    def __init__(self, vip: str, rate: float, base: int = 0) -> None:
        """``base``: the ids start after it (each load its own range: no duplicate keys)."""
        self.vip, self.rate, self.base = vip, rate, base
        self.acked: list[tuple[int, float]] = []
        self.failed: list[tuple[int, float]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        argv = ["ip", "netns", "exec", LB_NS, sys.executable, "-c", CLIENT]
        argv += [self.vip, str(self.rate), USER, PASSWORD, str(self.base)]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            said = line.decode(errors="replace").split()
            if len(said) != 3 or said[0] not in ("a", "f"):
                continue  # a line cut by the client's kill
            (self.acked if said[0] == "a" else self.failed).append((int(said[1]), float(said[2])))

    async def wait_acked(self, count: int, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while len(self.acked) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.acked)} writes acknowledged of {count}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()  # our own child, by its pid
            await self._proc.wait()
        if self._reader is not None:
            await self._reader

    def ids(self) -> set[int]:
        return {i for i, _ in self.acked}

    def first_ack_after(self, since: float) -> float | None:
        return next((t for _, t in self.acked if t >= since), None)

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged write from ``since`` on (the window in
        which writes failed)."""
        times = [since] + [t for _, t in self.acked if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def polled(
    what: Callable[[], Awaitable[bool]], limit: float, every: float = 0.05
) -> float | None:
    """Monotonic time at which ``what()`` first held, or None after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await what():
                return time.monotonic()
        await asyncio.sleep(every)
    return None
