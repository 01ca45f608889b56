#!/usr/bin/env python3
"""Store benchmark on a real 3-member etcd on loopback (lan timing: heartbeat 50 ms, election
500 ms), through corral's EtcdStore.

Figures (medians over repeated runs; latencies pooled over all samples):

- ``cas_txn_per_s``: compare-and-swap transactions per second, one client, each comparing the
  key's mod_revision and writing it (a real CAS chain); ``cas_txn_per_s_16_clients`` with 16
  concurrent clients on 16 keys through one store object;
- baselines measured in the same run: ``put_per_s`` (plain puts through EtcdStore, the cheapest
  write), ``aetcd_put_per_s`` (the same puts straight through aetcd: the cost of corral's layer)
  and ``memory_cas_txn_per_s`` (the in-memory twin: corral's code without etcd);
- ``watch_latency_ms_p50/p99``: from a put's send to the event's arrival at a prefix watch;
- ``keepalive_rtt_ms_p50/p99``: one lease keepalive round trip;
- ``leader_loss_recovery_s_p50/max``: after kill -9 of the leader, until the cluster commits a
  write again (probes every 20 ms, one try each, spread over the surviving members);
  ``leader_loss_client_put_s_p50``: what one EtcdStore.put issued at the kill (all three
  endpoints, 0.5 s tries) waits before it returns.

Usage: bench/store.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aetcd
from rich.console import Console
from rich.table import Table

from corral.store import Compare, EtcdStore, MemoryStore, Put, Store, StoreError
from corral.store.etcd import parse_endpoint
from corral.store.lab import EtcdLab


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cas_rate(store: Store, count: int, clients: int = 1) -> float:
    async def worker(wid: int) -> None:
        key = b"/bench/cas/%d" % wid
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


async def aetcd_put_rate(endpoint: str, count: int) -> float:
    host, port = parse_endpoint(endpoint)
    async with aetcd.Client(host=host, port=port) as client:
        start = time.perf_counter()
        for i in range(count):
            await client.put(b"/bench/raw", b"%d" % i)
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


async def one_leader_loss(lab: EtcdLab, run: int) -> tuple[float, float]:
    """(cluster commits again, one client put returns), seconds after kill -9 of the leader."""
    victim = await lab.leader()
    others = [i for i in range(len(lab.members)) if i != victim]
    probes = [lab.store(i, timeout=1.0, attempt_timeout=1.0) for i in others]
    client = lab.store(victim, *others, timeout=15.0, attempt_timeout=0.5)
    for store in [*probes, client]:
        await store.put(b"/bench/leader", b"warm")
    first_ok = asyncio.get_running_loop().create_future()

    async def probe(store: EtcdStore, i: int) -> None:
        try:
            await store.put(b"/bench/leader/probe", b"%d-%d" % (run, i))
        except StoreError:
            return
        if not first_ok.done():
            first_ok.set_result(time.perf_counter())

    lab.members[victim].kill()
    start = time.perf_counter()
    client_put = asyncio.create_task(client.put(b"/bench/leader", b"%d" % run))
    tasks = []
    i = 0
    while not first_ok.done() and time.perf_counter() - start < 15:
        tasks.append(asyncio.create_task(probe(probes[i % len(probes)], i)))
        i += 1
        await asyncio.sleep(0.02)
    recovered = await asyncio.wait_for(first_ok, 5) - start
    await client_put
    client_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    for store in [*probes, client]:
        await store.close()
    await lab.members[victim].start(wait=False)
    await lab.wait_healthy(30)
    await asyncio.sleep(0.5)  # let the restarted member catch up before the next run
    return recovered, client_s


async def measure(quick: bool, base: Path) -> dict[str, float]:
    n = 300 if quick else 2000
    repeats = 3 if quick else 5
    lab = EtcdLab(base, 3)
    await lab.start()
    try:
        store = lab.store()
        memory = MemoryStore()
        rates: dict[str, list[float]] = {
            k: []
            for k in (
                "put_per_s",
                "aetcd_put_per_s",
                "cas_txn_per_s",
                "cas_txn_per_s_16_clients",
                "memory_cas_txn_per_s",
            )
        }
        for _ in range(repeats):
            rates["put_per_s"].append(await put_rate(store, n))
            rates["aetcd_put_per_s"].append(await aetcd_put_rate(store.endpoint, n))
            rates["cas_txn_per_s"].append(await cas_rate(store, n))
            rates["cas_txn_per_s_16_clients"].append(await cas_rate(store, n * 2, 16))
            rates["memory_cas_txn_per_s"].append(await cas_rate(memory, n * 10))
        watch = await watch_latency(store, n)
        keep = await keepalive_rtt(store, n)
        await store.close()
        losses = [await one_leader_loss(lab, run) for run in range(repeats + 2)]
    finally:
        await lab.stop()
    out = {k: statistics.median(v) for k, v in rates.items()}
    recovered = [r for r, _ in losses]
    out.update(
        watch_latency_ms_p50=statistics.median(watch) * 1000,
        watch_latency_ms_p99=pct(watch, 0.99) * 1000,
        keepalive_rtt_ms_p50=statistics.median(keep) * 1000,
        keepalive_rtt_ms_p99=pct(keep, 0.99) * 1000,
        leader_loss_recovery_s_p50=statistics.median(recovered),
        leader_loss_recovery_s_max=max(recovered),
        leader_loss_client_put_s_p50=statistics.median(c for _, c in losses),
        leader_loss_runs=len(losses),
        repeats=repeats,
        cpus=os.cpu_count() or 0,
    )
    return out


def table(f: dict[str, float]) -> Table:
    t = Table(title="corral store on a 3-member etcd 3.5, loopback, lan timing (medians)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("vs baseline", justify="right")
    put = f["put_per_s"]
    t.add_row("plain put/s via EtcdStore (baseline)", f"{put:.0f}", "1.00x")
    t.add_row(
        "plain put/s via raw aetcd (baseline)",
        f"{f['aetcd_put_per_s']:.0f}",
        f"EtcdStore = {put / f['aetcd_put_per_s']:.2f}x of it",
    )
    t.add_row(
        "CAS txn/s, 1 client",
        f"{f['cas_txn_per_s']:.0f}",
        f"{f['cas_txn_per_s'] / put:.2f}x of put",
    )
    t.add_row(
        "CAS txn/s, 16 clients",
        f"{f['cas_txn_per_s_16_clients']:.0f}",
        f"{f['cas_txn_per_s_16_clients'] / put:.2f}x of put",
    )
    t.add_row(
        "in-memory CAS txn/s (baseline: no etcd)",
        f"{f['memory_cas_txn_per_s']:.0f}",
        f"{f['memory_cas_txn_per_s'] / f['cas_txn_per_s']:.0f}x of etcd",
    )
    t.add_row(
        "watch delivery p50 / p99",
        f"{f['watch_latency_ms_p50']:.2f} / {f['watch_latency_ms_p99']:.2f} ms",
        "",
    )
    t.add_row(
        "lease keepalive RTT p50 / p99",
        f"{f['keepalive_rtt_ms_p50']:.2f} / {f['keepalive_rtt_ms_p99']:.2f} ms",
        "",
    )
    t.add_row(
        f"commits again after leader kill -9, p50 / max ({f['leader_loss_runs']:.0f} runs)",
        f"{f['leader_loss_recovery_s_p50']:.2f} / {f['leader_loss_recovery_s_max']:.2f} s",
        "election timeout 0.5 s",
    )
    t.add_row(
        "one client put issued at the kill returns, p50",
        f"{f['leader_loss_client_put_s_p50']:.2f} s",
        "0.5 s tries",
    )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations (~1 minute)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-store-") as tmp:
        figures = asyncio.run(measure(args.quick, Path(tmp)))
    Console(width=max(Console().width, 110)).print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
