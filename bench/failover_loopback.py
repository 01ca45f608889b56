#!/usr/bin/env python3
"""Failover on loopback: three real agents over a real 3-member etcd, real HTTP services.

Measured (medians over runs, each run on a fresh cluster):
- service crash (kill -9 of its process group) -> healthy again on the same node;
- service answering HTTP 500 -> detected (the agent restarts it);
- service hung (SIGSTOP) -> detected and replaced;
- agent of the active-passive holder killed -9 -> served again on another node, and whether
  two nodes ever answered at once (sampled every 20 ms);
- an idle agent's RSS and CPU (over 10 s).
Baselines in the same run: the detection bound ``interval x fall + timeout`` of the checks,
and ``lease_ttl + 0.5 s`` for the takeover (etcd checks lease expiry every 0.5 s).

Usage: bench/failover_loopback.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.lab.loopback import Cluster
from corral.store import EtcdStore, Keys

INTERVAL, TIMEOUT, FALL, LEASE_TTL = 0.2, 0.3, 2, 1.0


async def until(check: Callable[[], bool], limit: float = 20.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def until_unhealthy(store: EtcdStore, node: str, limit: float = 20.0) -> float:
    """Seconds until the agent of ``node`` reports web unhealthy (the detection itself, before
    the restart that follows)."""
    key = Keys("agenttest").status(node, "web")
    start = time.monotonic()
    while time.monotonic() - start < limit:
        kv = await store.get(key)
        if kv is not None and b'"unhealthy"' in kv.value:
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise TimeoutError(f"web on {node} never reported unhealthy")


async def fresh(base: Path, checks: str | None = None) -> Cluster:
    c = Cluster(base) if checks is None else Cluster(base, checks)
    await c.start()
    await until(lambda: len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1)
    await asyncio.sleep(1.0)
    return c


async def one_run(base: Path) -> dict[str, float]:
    c = await fresh(base)
    try:
        out: dict[str, float] = {}
        pid = c.service_pid("n1", "web")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        out["crash_to_healthy_s"] = await until(
            lambda: c.service_pid("n1", "web") not in (None, pid) and "n1" in c.serving(c.web_port)
        )
        store = EtcdStore(c.etcd.endpoints)
        try:
            (c.base / "web-n2.mode").write_text("500")
            out["http500_detected_s"] = await until_unhealthy(store, "n2")
            (c.base / "web-n2.mode").write_text("ok")
            pid = c.service_pid("n3", "web")
            assert pid is not None
            os.killpg(pid, signal.SIGSTOP)
            out["hang_detected_s"] = await until_unhealthy(store, "n3")
        finally:
            await store.close()
        await until(lambda: len(c.serving(c.web_port)) == 3)
        (holder,) = c.serving(c.api_port)
        c.kill_agent(holder)
        start, two = time.monotonic(), 0.0
        while time.monotonic() - start < 20:
            answering = c.serving(c.api_port)
            two = max(two, float(len(answering) > 1))
            if answering and holder not in answering:
                break
            await asyncio.sleep(0.02)
        out["ap_takeover_s"] = time.monotonic() - start
        out["two_holders_seen"] = two
        return out
    finally:
        await c.stop()


def agent_idle(base: Path) -> dict[str, float]:
    async def measure() -> dict[str, float]:
        # the default check timing (every 1 s): an idle agent is measured as deployed
        c = await fresh(base, "interval: 1s, timeout: 500ms, rise: 2, fall: 2")
        try:
            pid = c.agents["n1"].pid
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks

            before, t0 = cpu(), time.monotonic()
            await asyncio.sleep(10)
            used = (cpu() - before) / (time.monotonic() - t0)
            rss = (
                next(
                    int(line.split()[1])
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")
                )
                / 1024
            )
            return {"agent_idle_cpu_pct": used * 100, "agent_rss_mb": rss}
        finally:
            await c.stop()

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    runs = 5
    results = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-failover-") as tmp:
        for i in range(runs):
            results.append(asyncio.run(one_run(Path(tmp) / f"run{i}")))
        idle = agent_idle(Path(tmp) / "idle")
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    med["two_holders_seen"] = max(r["two_holders_seen"] for r in results)
    med.update(idle)
    bound = INTERVAL * FALL + TIMEOUT
    table = Table(title=f"failover on loopback, median of {runs} runs (lan profile)")
    for col in ("figure", "median", "target", "met"):
        table.add_column(col)
    rows = [
        ("service crash -> healthy again", med["crash_to_healthy_s"], None),
        ("HTTP 500 -> detected", med["http500_detected_s"], bound),
        ("hung (SIGSTOP) -> detected", med["hang_detected_s"], bound),
        ("A/P holder's agent killed -> served elsewhere", med["ap_takeover_s"], LEASE_TTL + 0.5),
    ]
    for label, value, target in rows:
        table.add_row(
            label,
            f"{value:.2f} s",
            f"< {target:.2f} s" if target else "",
            "" if target is None else ("yes" if value < target else "NO"),
        )
    table.add_row(
        "two holders of the A/P service seen",
        "yes" if med["two_holders_seen"] else "no",
        "never",
        "yes" if not med["two_holders_seen"] else "NO",
    )
    table.add_row(
        "idle agent CPU",
        f"{med['agent_idle_cpu_pct']:.2f} %",
        "< 1 %",
        "yes" if med["agent_idle_cpu_pct"] < 1 else "NO",
    )
    table.add_row(
        "idle agent RSS",
        f"{med['agent_rss_mb']:.0f} MB",
        "< 80 MB",
        "yes" if med["agent_rss_mb"] < 80 else "NO",
    )
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(med, indent=2) + "\n")


if __name__ == "__main__":
    main()
