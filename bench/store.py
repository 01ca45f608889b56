#!/usr/bin/env python3
"""Store benchmark on a real 3-member etcd on loopback (lan timing: heartbeat 50 ms, election
500 ms), through corral's EtcdStore.

Reports compare-and-swap transactions per second (one client, and 16 concurrent), watch delivery
latency, lease keepalive round trip, and the time until the cluster serves writes again after
its leader is killed -9. Baselines measured in the same run: plain puts (the cheapest write) and
the in-memory store (the cost of corral's own layer without etcd).

Usage: bench/store.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.store import Compare, MemoryStore, Put, Store
from corral.store.lab import EtcdLab


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cas_rate(store: Store, count: int, clients: int = 1) -> float:
    """Transactions/s: each one compares the key's mod_revision, then writes it (a real CAS)."""

    async def worker(wid: int) -> None:
        key = f"/bench/cas/{wid}".encode()
        rev = await store.put(key, b"0")
        for i in range(count // clients):
            result = await store.txn([Compare.unchanged_since(key, rev)], [Put(key, b"%d" % i)])
            assert result.succeeded
            rev = result.revision

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return count / (time.perf_counter() - start)


async def put_rate(store: Store, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        await store.put(b"/bench/put", b"%d" % i)
    return count / (time.perf_counter() - start)


async def watch_latency(store: Store, count: int) -> list[float]:
    sent: dict[bytes, float] = {}
    lat: list[float] = []
    rev = await store.put(b"/bench/w/start", b"")
    done = asyncio.Event()

    async def watch() -> None:
        async for event in store.watch(b"/bench/w/", rev + 1):
            lat.append(time.perf_counter() - sent[event.key])
            if len(lat) == count:
                done.set()
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    for i in range(count):
        key = b"/bench/w/%06d" % i
        sent[key] = time.perf_counter()
        await store.put(key, b"")
        await asyncio.sleep(0.002)
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    return lat


async def keepalive_rtt(store: Store, count: int) -> list[float]:
    lease = await store.grant(5)
    out = []
    for _ in range(count):
        start = time.perf_counter()
        await store.keepalive(lease.id)
        out.append(time.perf_counter() - start)
    await store.revoke(lease.id)
    return out


def is_leader(client_url: str) -> bool:
    with urllib.request.urlopen(client_url + "/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("etcd_server_is_leader "):
                return line.split()[1] == "1"
    return False


async def leader_loss(lab: EtcdLab, runs: int) -> list[float]:
    out = []
    for run in range(runs):
        leader = next(m for m in lab.members if is_leader(m.config.client_url))
        # one try per election timeout: a try caught by the leader's death is abandoned then
        store = lab.store(timeout=15.0, attempt_timeout=0.5)
        await store.put(b"/bench/leader", b"warm")
        leader.kill()
        start = time.perf_counter()
        await store.put(b"/bench/leader", b"%d" % run)
        out.append(time.perf_counter() - start)
        await store.close()
        await leader.start(wait=False)
        for m in lab.members:
            await m.wait_healthy(30)
        await asyncio.sleep(0.5)
    return out


async def run(quick: bool) -> dict[str, float]:
    n = 300 if quick else 2000
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="corral-bench-store-") as tmp:
        lab = EtcdLab(Path(tmp), 3)
        await lab.start()
        try:
            store = lab.store()
            memory = MemoryStore()
            figures: dict[str, list[float]] = {
                k: []
                for k in (
                    "put_per_s",
                    "cas_txn_per_s",
                    "cas_txn_per_s_16_clients",
                    "memory_cas_txn_per_s",
                )
            }
            for _ in range(repeats):
                figures["put_per_s"].append(await put_rate(store, n))
                figures["cas_txn_per_s"].append(await cas_rate(store, n))
                figures["cas_txn_per_s_16_clients"].append(await cas_rate(store, n * 2, 16))
                figures["memory_cas_txn_per_s"].append(await cas_rate(memory, n * 10))
            watch = await watch_latency(store, n)
            keep = await keepalive_rtt(store, n)
            await store.close()
            recovery = await leader_loss(lab, repeats)
        finally:
            await lab.stop()
    out = {k: statistics.median(v) for k, v in figures.items()}
    out.update(
        watch_latency_ms_p50=statistics.median(watch) * 1000,
        watch_latency_ms_p99=pct(watch, 0.99) * 1000,
        keepalive_rtt_ms_p50=statistics.median(keep) * 1000,
        keepalive_rtt_ms_p99=pct(keep, 0.99) * 1000,
        leader_loss_recovery_s_p50=statistics.median(recovery),
        leader_loss_recovery_s_max=max(recovery),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    f = asyncio.run(run(args.quick))
    table = Table(title="corral store on a 3-member etcd, loopback, lan timing (medians)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_row("plain put/s (baseline)", f"{f['put_per_s']:.0f}", "1.00x")
    table.add_row(
        "CAS txn/s, 1 client",
        f"{f['cas_txn_per_s']:.0f}",
        f"{f['cas_txn_per_s'] / f['put_per_s']:.2f}x of put",
    )
    table.add_row(
        "CAS txn/s, 16 clients",
        f"{f['cas_txn_per_s_16_clients']:.0f}",
        f"{f['cas_txn_per_s_16_clients'] / f['put_per_s']:.2f}x of put",
    )
    table.add_row(
        "in-memory CAS txn/s (corral layer only)",
        f"{f['memory_cas_txn_per_s']:.0f}",
        f"{f['memory_cas_txn_per_s'] / f['cas_txn_per_s']:.0f}x of etcd",
    )
    table.add_row(
        "watch delivery p50 / p99",
        f"{f['watch_latency_ms_p50']:.2f} / {f['watch_latency_ms_p99']:.2f} ms",
        "",
    )
    table.add_row(
        "lease keepalive RTT p50 / p99",
        f"{f['keepalive_rtt_ms_p50']:.2f} / {f['keepalive_rtt_ms_p99']:.2f} ms",
        "",
    )
    table.add_row(
        "writes again after leader kill -9, p50 / max",
        f"{f['leader_loss_recovery_s_p50']:.2f} / {f['leader_loss_recovery_s_max']:.2f} s",
        "election timeout 0.5 s",
    )
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(f, indent=2) + "\n")


if __name__ == "__main__":
    main()
