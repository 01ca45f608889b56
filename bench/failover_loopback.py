#!/usr/bin/env python3
"""Failover on loopback: three real agents over a real 3-member etcd, real HTTP services.

Measured (medians over runs, each run on a fresh cluster):
- service crash (kill -9 of its process group) -> healthy again on the same node;
- service answering HTTP 500 -> detected (the agent restarts it);
- service hung (SIGSTOP) -> detected and replaced;
- agent of the active-passive holder killed -9 -> served again on another node, and whether
  two nodes ever answered at once (sampled every 20 ms);
- idle agents' CPU (median over the three agents of the median over windows; the Python
  main thread's share; the lease guard process) and RSS. ``bench/agent_idle.py`` breaks the
  idle CPU down by part.
Baselines in the same run: the detection bound ``interval x fall + timeout`` of the checks,
and ``lease_ttl + 0.5 s`` for the takeover (etcd checks lease expiry every 0.5 s).

The HTTP 500 and the hang are injected at a random phase of the check interval (seeded): the
checks of every agent run on one timer grid, so a fault injected right after the previous
detection would always land just after a check, the worst case of the bound, every time.

A run that fails (a fault not recovered in time, a cluster that did not come up) does not end
the benchmark: it is named under the table and in the JSON (``failures``), the figures it had
measured before count, the other runs go on, and the exit status is 1.

Usage: bench/failover_loopback.py [--quick] [--idle-only] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.lab.loopback import Cluster
from corral.records import StatusRecord
from corral.spec.profiles import profile_timing
from corral.store import EtcdStore, Keys

sys.path.insert(0, str(Path(__file__).parent))
from _cpu import cpu_by_thread, cpu_seconds, rss_mb

INTERVAL, TIMEOUT, FALL = 0.2, 0.3, 2
LEASE_TTL = profile_timing("lan").lease_ttl


Figures = dict[str, float]


async def until(check: Callable[[], bool], what: str, limit: float = 20.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise TimeoutError(f"{what}: not within {limit:g} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def until_unhealthy(store: EtcdStore, node: str, limit: float = 20.0) -> float:
    """Seconds until the agent of ``node`` reports web unhealthy (the detection itself, before
    the restart that follows)."""
    key = Keys("agenttest").status(node, "web")
    start = time.monotonic()
    while time.monotonic() - start < limit:
        kv = await store.get(key)
        status = StatusRecord.parse(kv.value) if kv is not None else None
        if status is not None and any(i.health == "unhealthy" for i in status.instances):
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise TimeoutError(f"web on {node} never reported unhealthy")


async def fresh(base: Path, checks: str | None = None) -> Cluster:
    # agents log at the default level, as deployed ones do (debug lines cost CPU)
    c = Cluster(base, verbose=False) if checks is None else Cluster(base, checks, verbose=False)
    try:
        await c.start()
        await until(
            lambda: len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1,
            "a fresh cluster serving web on 3 nodes and api on 1",
        )
    except BaseException:
        await c.stop()
        raise
    await asyncio.sleep(1.0)
    return c


async def one_run(base: Path, rng: random.Random, out: Figures) -> None:
    """One run on a fresh cluster; each figure lands in ``out`` as soon as it is measured (a
    run that fails later keeps them)."""
    c = await fresh(base)
    try:
        pid = c.service_pid("n1", "web")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        out["crash_to_healthy_s"] = await until(
            lambda: c.service_pid("n1", "web") not in (None, pid) and "n1" in c.serving(c.web_port),
            "web killed on n1, healthy again there",
        )
        store = EtcdStore(c.etcd.endpoints)
        try:
            await asyncio.sleep(rng.uniform(0, INTERVAL))  # a fault comes at any phase
            (c.base / "web-n2.mode").write_text("500")
            out["http500_detected_s"] = await until_unhealthy(store, "n2")
            (c.base / "web-n2.mode").write_text("ok")
            pid = c.service_pid("n3", "web")
            assert pid is not None
            await asyncio.sleep(rng.uniform(0, INTERVAL))
            os.killpg(pid, signal.SIGSTOP)
            out["hang_detected_s"] = await until_unhealthy(store, "n3")
        finally:
            await store.close()
        await until(lambda: len(c.serving(c.web_port)) == 3, "web on 3 nodes after the faults")
        holders = list(c.serving(c.api_port))
        if len(holders) != 1:
            raise RuntimeError(f"api served on {holders or 'no node'} before the kill, not one")
        holder = holders[0]
        c.kill_agent(holder)
        start, two = time.monotonic(), 0.0
        while time.monotonic() - start < 20:
            answering = c.serving(c.api_port)
            two = max(two, float(len(answering) > 1))
            if answering and holder not in answering:
                break
            await asyncio.sleep(0.02)
        out["two_holders_seen"] = two
        if not (answering and holder not in answering):
            raise TimeoutError(f"api not served elsewhere within 20 s of {holder}'s agent kill")
        out["ap_takeover_s"] = time.monotonic() - start
    finally:
        await c.stop()


def agent_idle(base: Path, windows: int = 5, seconds: float = 4.0) -> dict[str, float]:
    """Idle CPU of every agent (median over agents of the median over windows), the share of
    the Python main thread, the lease guard process, and the largest RSS."""

    async def measure() -> dict[str, float]:
        # the default check timing (every 1 s): an idle agent is measured as deployed
        c = await fresh(base, "interval: 1s, timeout: 500ms, rise: 2, fall: 2")
        try:
            await asyncio.sleep(2.0)  # the first rounds after the joins are over
            pids = {n: p.pid for n, p in c.agents.items()}
            guards = {n: int((c.state_dir(n) / "guard.pid").read_text()) for n in pids}
            per_agent: dict[str, list[float]] = {n: [] for n in pids}
            main_share: list[float] = []
            g_before = {n: cpu_seconds(p) for n, p in guards.items()}
            g_start = time.monotonic()
            for _ in range(windows):
                before = {n: cpu_by_thread(p) for n, p in pids.items()}
                t0 = time.monotonic()
                await asyncio.sleep(seconds)
                dt = time.monotonic() - t0
                for n, p in pids.items():
                    after = cpu_by_thread(p)
                    used = {k: v - before[n].get(k, 0) for k, v in after.items()}
                    total = sum(used.values())
                    per_agent[n].append(total / dt * 100)
                    if total:
                        main_share.append(used.get("python", 0) / total)
            g_dt = time.monotonic() - g_start
            guard = [(cpu_seconds(p) - g_before[n]) / g_dt * 100 for n, p in guards.items()]
            rss = max(rss_mb(p) for p in pids.values())
            return {
                "agent_idle_cpu_pct": statistics.median(
                    statistics.median(v) for v in per_agent.values()
                ),
                "agent_idle_cpu_max_pct": max(statistics.median(v) for v in per_agent.values()),
                "agent_idle_main_thread_share": statistics.median(main_share),
                "guard_idle_cpu_pct": statistics.median(guard),
                "agent_rss_mb": rss,
            }
        finally:
            await c.stop()

    return asyncio.run(measure())


def idle_table(idle: dict[str, float]) -> Table:
    table = Table(title="idle agent (three agents, default checks every 1 s)")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col)
    cpu, rss = idle["agent_idle_cpu_pct"], idle["agent_rss_mb"]
    table.add_row("CPU, median agent", f"{cpu:.2f} %", "< 1 %", "yes" if cpu < 1 else "NO")
    table.add_row("CPU, busiest agent", f"{idle['agent_idle_cpu_max_pct']:.2f} %", "", "")
    share = idle["agent_idle_main_thread_share"] * 100
    table.add_row("  of which the Python main thread", f"{share:.0f} %", "", "")
    table.add_row("lease guard process CPU", f"{idle['guard_idle_cpu_pct']:.2f} %", "", "")
    table.add_row("RSS, largest agent", f"{rss:.0f} MB", "< 80 MB", "yes" if rss < 80 else "NO")
    return table


def measure(
    runs: int, run: Callable[[int, Figures], None], idle: Callable[[], Figures]
) -> tuple[Figures, list[str]]:
    """Every run (``run(i, figures)``), then the idle figures, whatever fails: the summary
    of what was measured, and one line per failure naming the run and why."""
    results: list[Figures] = []
    failures: list[str] = []
    for i in range(runs):
        out: Figures = {}
        try:
            run(i, out)
        except Exception as exc:
            failures.append(f"run {i + 1} of {runs}: {type(exc).__name__}: {exc}")
        results.append(out)
    summary = summarize(results)
    try:
        summary.update(idle())
    except Exception as exc:
        failures.append(f"idle figures: {type(exc).__name__}: {exc}")
    return summary, failures


def summarize(results: list[Figures]) -> Figures:
    """Medians (and maxima of the detection and takeover times) over the runs that measured
    each figure; a figure no run measured is absent."""
    med: Figures = {}
    for key in dict.fromkeys(k for r in results for k in r):
        values = [r[key] for r in results if key in r]
        med[key] = max(values) if key == "two_holders_seen" else statistics.median(values)
        if key in ("http500_detected_s", "hang_detected_s", "ap_takeover_s"):
            med[key.removesuffix("_s") + "_max_s"] = max(values)
    return med


def failover_table(med: Figures, runs: int, failures: list[str]) -> Table:
    failed = sum(f.startswith("run ") for f in failures)
    title = f"failover on loopback, median of {runs} runs (lan profile)"
    table = Table(title=title + (f": {failed} of {runs} FAILED (below)" if failed else ""))
    for col in ("figure", "median", "max", "target", "met"):
        table.add_column(col)
    bound = INTERVAL * FALL + TIMEOUT
    rows = [
        ("service crash -> healthy again", "crash_to_healthy_s", None),
        ("HTTP 500 -> detected", "http500_detected_s", bound),
        ("hung (SIGSTOP) -> detected", "hang_detected_s", bound),
        ("A/P holder's agent killed -> served elsewhere", "ap_takeover_s", LEASE_TTL + 0.5),
    ]
    for label, key, target in rows:
        value, most = med.get(key), med.get(key.removesuffix("_s") + "_max_s")
        met = "" if target is None or value is None else ("yes" if value < target else "NO")
        table.add_row(
            label,
            "not measured" if value is None else f"{value:.2f} s",
            "" if most is None else f"{most:.2f} s",
            f"< {target:.2f} s" if target else "",
            met,
        )
    two = med.get("two_holders_seen")
    seen = "not measured" if two is None else ("yes" if two else "no")
    table.add_row("two holders of the A/P service seen", seen, "", "never", "NO" if two else "yes")
    return table


def report(med: Figures, runs: int, failures: list[str], json_file: str | None) -> int:
    """Print the tables and the failures, write the JSON; the exit status (1: a failure)."""
    console = Console()
    console.print(failover_table(med, runs, failures))
    if "agent_idle_cpu_pct" in med:
        console.print(idle_table(med))
    for failure in failures:
        console.print(f"[bold red]FAILED[/] {failure}")
    if json_file:
        Path(json_file).write_text(json.dumps({**med, "failures": failures}, indent=2) + "\n")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one failover run, not five")
    parser.add_argument("--idle-only", action="store_true", help="only the idle figures")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.idle_only:
        with tempfile.TemporaryDirectory(prefix="corral-bench-idle-") as tmp:
            idle = agent_idle(Path(tmp) / "idle", windows=10)
        Console().print(idle_table(idle))
        if args.json:
            Path(args.json).write_text(json.dumps(idle, indent=2) + "\n")
        return
    runs = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="corral-bench-failover-") as tmp:

        def run(i: int, out: Figures) -> None:
            asyncio.run(one_run(Path(tmp) / f"run{i}", random.Random(i), out))

        med, failures = measure(runs, run, lambda: agent_idle(Path(tmp) / "idle"))
    sys.exit(report(med, runs, failures, args.json))


if __name__ == "__main__":
    main()
