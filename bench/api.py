#!/usr/bin/env python3
"""The agent's HTTP API: health endpoint latency and metrics scrape time.

Health (three real agents on loopback over a real 3-member etcd, ``corral.lab.loopback``):
``/v1/health/web`` of one agent, one request every 10 ms over a keep-alive connection,
p50/p99 of the round trip
- ``idle``: nothing else going on;
- ``load``: while another client sends 200 requests per second to the same agent's API;
- ``stalled``: while that agent's control loop is blocked by the stall hook (the answers
  come from its last state: 200, then 503 ``stale``; the latency is what is measured).
Baseline in the same run: the lab's stand-in HTTP service on the same node address (a plain
Python HTTP server), measured the same way: the ratio is what the API costs over the
cheapest HTTP answer on this machine.

Metrics (in process, an in-memory store filled synthetically: 50 nodes x 500 resources,
25,000 instance reports and 500 assignments): ``/metrics`` as the controller answers it (node
series, and the cluster series' last rendering), as any other agent does (node series only),
and ``render``: one rendering of the cluster series (read, parse, text; done off the API's
loop, at most every 5 s while scraped); baseline: building the ``corral status`` view of the
same records.

Usage: bench/api.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from corral.aio import wait_until
from corral.lab.loopback import NODES, Cluster
from corral.store import Keys


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sample(url: str, count: int, every: float = 0.01) -> list[float]:
    """Round trips (ms) of ``count`` GETs of ``url``, one every ``every`` seconds."""
    out = []
    async with httpx.AsyncClient(timeout=5) as client:
        await client.get(url)  # the connection, once
        for _ in range(count):
            start = time.perf_counter()
            await client.get(url)
            out.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - start)))
    return out


async def load(url: str, rate: float, seconds: float) -> int:
    """``rate`` GETs a second of ``url`` for ``seconds`` (open loop, bounded); how many."""
    sent, start = 0, time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as client:
        pending: set[asyncio.Task[Any]] = set()
        while time.perf_counter() - start < seconds:
            task = asyncio.create_task(client.get(url))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        await asyncio.gather(*pending, return_exceptions=True)
    return sent


async def settle(c: Cluster) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                r = await client.get(f"http://{NODES['n1']}:{c.http_port}/v1/health/web")
                if r.status_code == 200 and len(c.serving(c.web_port)) == 3:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the lab did not settle (logs in {c.base})")
            await asyncio.sleep(0.2)


async def health(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-api-") as tmp:
        c = Cluster(Path(tmp), verbose=False)
        try:
            await c.start()
            await settle(c)
            api = f"http://{NODES['n1']}:{c.http_port}"
            base = f"http://{NODES['n1']}:{c.web_port}/"
            out: dict[str, Any] = {"baseline": await sample(base, count)}
            out["idle"] = await sample(f"{api}/v1/health/web", count)
            seconds = count * 0.01 + 2.0  # the load in a process of its own: its client's
            argv = [sys.executable, __file__, "--as-load", f"{api}/v1/health", "200", str(seconds)]
            loader = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            await asyncio.sleep(0.5)  # CPU must not count as the server's latency
            out["load"] = await sample(f"{api}/v1/health/web", count)
            out["load_sent"] = int((await loader.communicate())[0] or 0)
            stall = c.state_dir("n1") / "stall-loop"
            stall.write_text(str(count * 0.01 + 3))

            async def taken() -> bool:
                return not stall.exists()

            await wait_until(taken, 10, 0.01, "the stall taken by the loop")
            out["stalled"] = await sample(f"{api}/v1/health/web", count)
        finally:
            await c.stop()
    return out


def synthetic(nodes: int, resources: int) -> tuple[Any, Any]:
    """A spec and an in-memory store with every resource reported on every node."""
    from corral.records import AssignedInstance, AssignRecord, StatusInstance, StatusRecord
    from corral.spec import load_spec_text
    from corral.store.memory import MemoryStore

    names = [f"n{i}" for i in range(nodes)]
    lines = ["cluster: big", "nodes:"]
    lines += [f"  {n}: {{address: 198.18.{i // 200}.{i % 200 + 1}"
              + (", kind: remote}" if i >= 3 else "}") for i, n in enumerate(names)]  # fmt: skip
    lines += ["resources:"] + [f'  r{j}: {{process: "sleep 1"}}' for j in range(resources)]
    spec = load_spec_text("\n".join(lines))
    store, keys = MemoryStore(), Keys("big")

    async def fill() -> None:
        report = StatusRecord((StatusInstance("started", "healthy"),)).dump()
        for j in range(resources):
            assign = AssignRecord(tuple(AssignedInstance(n) for n in names))
            await store.put(keys.assign(f"r{j}"), assign.dump())
            for n in names:
                await store.put(keys.status(n, f"r{j}"), report)

    asyncio.run(fill())
    return spec, store


def const(snap: Any) -> Any:
    return lambda: snap


def metrics(repeat: int, nodes: int = 50, resources: int = 500) -> dict[str, Any]:
    from corral.agent.snapshot import AgentSnapshot
    from corral.api import Reader, Source, make_app
    from corral.api.metrics import cluster_metrics, exposition
    from corral.auth.read import read_public
    from corral.auth.tokens import create
    from corral.records.view import cluster_view

    spec, store = synthetic(nodes, resources)
    keys = Keys("big")
    out: dict[str, Any] = {"controller": [], "node": [], "baseline": [], "render": []}

    async def run() -> None:
        token, _ = await create(store, keys, "prom", "viewer", by="bench", now=0.0)
        headers = {"Authorization": f"Bearer {token}"}
        for controller in (True, False):
            now = time.monotonic()
            snap = AgentSnapshot(
                "big", "n0", now, time.time(), 1e9, lease=1, lease_deadline=now + 1e9,
                controller=controller, spec=spec,
            )  # fmt: skip
            app = make_app(Source(const(snap)), Reader(const(snap), lambda: store))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                await client.get("/metrics", headers=headers)  # the token check, once
                for _ in range(repeat):
                    start = time.perf_counter()
                    r = await client.get("/metrics", headers=headers)
                    took = (time.perf_counter() - start) * 1000
                    assert r.status_code == 200, r.text
                    out["controller" if controller else "node"].append(took)
                    out["bytes_" + ("controller" if controller else "node")] = len(r.content)
        for _ in range(repeat):
            start = time.perf_counter()
            kvs, revision = await read_public(store, keys)
            cluster_view(spec, keys, kvs)
            out["baseline"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            kvs, revision = await read_public(store, keys)
            exposition(cluster_metrics(spec, keys, kvs, revision))
            out["render"].append((time.perf_counter() - start) * 1000)

    asyncio.run(run())
    return out


def report(h: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    console = Console()
    table = Table("health endpoint", "p50 ms", "p99 ms", "p50 / baseline", title="bench/api.py")
    base = statistics.median(h["baseline"])
    figures: dict[str, Any] = {}
    for phase in ("baseline", "idle", "load", "stalled"):
        p50, p99 = statistics.median(h[phase]), pct(h[phase], 0.99)
        figures[f"health_{phase}_ms_p50"], figures[f"health_{phase}_ms_p99"] = p50, p99
        table.add_row(phase, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / base:.2f}")
    console.print(table)
    console.print(f"load: {h['load_sent']} requests sent at 200/s beside the samples")
    scrape = Table("/metrics at 50 nodes x 500 resources", "median ms", "max ms", "ratio")
    mbase = statistics.median(m["baseline"])
    for what in ("baseline", "render", "controller", "node"):
        med = statistics.median(m[what])
        figures[f"metrics_{what}_ms"] = med
        scrape.add_row(what, f"{med:.1f}", f"{max(m[what]):.1f}", f"{med / mbase:.2f}")
    console.print(scrape)
    figures["metrics_bytes_controller"] = m["bytes_controller"]
    console.print(f"scrape size: controller {m['bytes_controller']} B, node {m['bytes_node']} B")
    return figures


def main() -> None:
    if "--as-load" in sys.argv:  # the load generator's process
        url, rate, seconds = sys.argv[sys.argv.index("--as-load") + 1 :][:3]
        print(asyncio.run(load(url, float(rate), float(seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 samples, 3 scrapes")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    count, repeat = (200, 3) if args.quick else (1000, 10)
    try:
        h = asyncio.run(health(count))
        m = metrics(repeat)
    except (TimeoutError, OSError, AssertionError, httpx.HTTPError) as exc:
        print(f"bench/api.py failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    figures = report(h, m)
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "raw": h | m}, indent=2) + "\n")


if __name__ == "__main__":
    main()
