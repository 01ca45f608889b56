#!/usr/bin/env python3
"""Idle agent CPU, broken down by switching parts off (and optionally profiled with py-spy).

Starts the loopback lab of ``bench/failover_loopback.py`` (three real agents over a real
3-member etcd, the default check timing: every 1 s), lets it settle, then measures each agent's
CPU (utime + stime from ``/proc``) over several windows and reports the median per agent.

``--patch NAME`` (repeatable) starts every agent through this script with a monkeypatch applied
first, so a part's cost is the difference to a plain run. The patches are experiments only
(they switch safety-relevant parts off); see :data:`PATCHES`. ``--profile FILE`` records the
first agent with ``py-spy record --format raw`` (collapsed stacks) during the measurement.

Usage: bench/agent_idle.py [--windows 5] [--seconds 10] [--patch NAME ...] [--profile FILE]
       bench/agent_idle.py --matrix          (one run per patch, then a table)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve()
DEFAULT_CHECKS = "interval: 1s, timeout: 500ms, rise: 2, fall: 2"


# --- patches (run inside the agent process) ------------------------------------------------------


def _patch_legacy_keepalive() -> None:
    """The store's keepalive as before the long-lived stream: one new gRPC stream per
    renewal (for an A/B on the same tree)."""
    from aetcd import rpc

    from corral.store import etcd
    from corral.store._etcd_wire import REQUIRE_LEADER
    from corral.store.errors import LeaseNotFound

    async def keepalive(self: Any, lease_id: int) -> int:
        async def attempt(client: Any, budget: float) -> Any:
            stream = client.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                timeout=budget,
                metadata=REQUIRE_LEADER,
            )
            async for reply in stream:
                return reply
            return None

        reply = await self._call("keepalive", attempt)
        if reply is None or reply.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        return int(reply.TTL)

    etcd.EtcdStore.keepalive = keepalive  # type: ignore[method-assign]


def _patch_no_gossip() -> None:
    from corral.agent import node

    init = node.Agent.__init__

    def without(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["gossip"] = False
        init(self, *args, **kwargs)

    node.Agent.__init__ = without  # type: ignore[method-assign]


def _patch_no_checks() -> None:
    """Health checks answer ok without any I/O (the schedule and the trackers still run)."""
    from corral.core.health import CheckOutcome
    from corral.health import checks

    async def ok(check: Any, node: Any) -> CheckOutcome:
        return CheckOutcome("ok", "patched", 0.0)

    checks.run_check = ok  # type: ignore[assignment]


def _patch_no_poll() -> None:
    from corral.agent import node

    node.STATUS_POLL = 1e9


def _patch_no_round() -> None:
    """Rounds only when something changed (no once-a-second round)."""
    from corral.agent import node

    node.ROUND_EVERY = 1e9


def _patch_no_guard() -> None:
    from corral.agent import node

    node.Agent._update_guard = lambda self: None  # type: ignore[method-assign]


def _patch_cached_timing() -> None:
    """``Spec.effective_timing`` computed once per spec instead of on every access (it builds
    a pydantic model; the agent reads it several times per keepalive interval)."""
    from corral.spec import model

    cache: dict[int, Any] = {}
    resolve = model.resolve_timing

    def effective_timing(self: Any) -> Any:
        key = id(self)
        if key not in cache:
            cache[key] = resolve(self.profile, self.timing)
        return cache[key]

    model.Spec.effective_timing = property(effective_timing)  # type: ignore[method-assign,assignment]


PATCHES = {
    "legacy-keepalive": _patch_legacy_keepalive,
    "no-gossip": _patch_no_gossip,
    "no-checks": _patch_no_checks,
    "no-poll": _patch_no_poll,
    "no-round": _patch_no_round,
    "no-guard": _patch_no_guard,
    "cached-timing": _patch_cached_timing,
}


def agent_main(patches: list[str], argv: list[str]) -> None:
    """Apply ``patches``, then run ``corral agent`` with ``argv``."""
    for name in patches:
        if name == "quiet":
            argv = [a for a in argv if a != "-v"]
        elif name:
            PATCHES[name]()
    from corral.cli.main import main

    sys.argv = ["corral", *argv]
    main()


# --- the measurement ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(
    base: Path, patches: list[str], windows: int, seconds: float, profile: str | None
) -> dict[str, Any]:
    from corral.lab.loopback import Cluster

    class Patched(Cluster):
        """Agents started through this script (``--as-agent``) when patches are asked for."""

        def start_agent(self, node: str) -> None:
            if not patches:
                super().start_agent(node)
                return
            self.state_dir(node).mkdir(parents=True, exist_ok=True)
            argv = ["agent", "--spec", str(self.spec_file), "--node", node, "--etcd"]
            argv += [self.etcd_arg, "--state-dir", str(self.state_dir(node)), "-v"]
            with open(self.base / f"agent-{node}.log", "ab") as log:
                self.agents[node] = subprocess.Popen(
                    [sys.executable, str(BENCH), "--as-agent", ",".join(patches), "--", *argv],
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )

    c = Patched(base, DEFAULT_CHECKS)
    await c.start()
    try:
        deadline = time.monotonic() + 30
        while not (len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1):
            if time.monotonic() > deadline:
                raise TimeoutError("cluster did not settle")
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # registration, gossip join and the first rounds are over
        pids = {n: p.pid for n, p in c.agents.items()}
        spy = None
        if profile:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "-p",
                    str(pids["n1"]),
                    "-d",
                    str(int(windows * seconds)),
                    "-r",
                    "1000",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "-o",
                    profile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        samples: dict[str, list[float]] = {n: [] for n in pids}
        for _ in range(windows):
            before = {n: cpu_seconds(p) for n, p in pids.items()}
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            dt = time.monotonic() - t0
            for n, p in pids.items():
                samples[n].append((cpu_seconds(p) - before[n]) / dt * 100)
        if spy is not None:
            spy.wait(timeout=60)
        rss = {n: rss_mb(p) for n, p in pids.items()}
        controller = await _controller(c.etcd.endpoints)
    finally:
        await c.stop()
    return {
        "patches": patches,
        "cpu_pct": {n: statistics.median(s) for n, s in samples.items()},
        "cpu_samples": samples,
        "rss_mb": rss,
        "controller": controller,
    }


async def _controller(endpoints: list[str]) -> str:
    from corral.store import EtcdStore, Keys

    store = EtcdStore(endpoints)
    try:
        kv = await store.get(Keys("agenttest").controller)
        return kv.value.decode(errors="replace")[:40] if kv else "?"
    finally:
        await store.close()


def run(patches: list[str], windows: int, seconds: float, profile: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-idle-") as tmp:
        return asyncio.run(measure(Path(tmp), patches, windows, seconds, profile))


def main() -> None:
    if "--as-agent" in sys.argv:
        i = sys.argv.index("--as-agent")
        agent_main(sys.argv[i + 1].split(","), sys.argv[i + 3 :])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--patch", action="append", default=[], choices=[*PATCHES, "quiet"])
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--matrix", action="store_true", help="one run per patch")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    configs = [args.patch]
    if args.matrix:
        configs = [[], *([p] for p in [*PATCHES, "quiet"])]
    results = []
    for patches in configs:
        r = run(patches, args.windows, args.seconds, args.profile if not args.matrix else None)
        results.append(r)
        cpu = r["cpu_pct"]
        print(
            f"{'+'.join(patches) or 'plain':18s} "
            + "  ".join(f"{n} {v:5.2f}%" for n, v in cpu.items())
            + f"  median {statistics.median(cpu.values()):5.2f}%"
            + f"  rss {max(r['rss_mb'].values()):.0f} MB  controller {r['controller']}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
