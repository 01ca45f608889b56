"""``/metrics``: metric names held by a golden file (rewrite it with
``CORRAL_UPDATE_GOLDEN=1``), node series on every agent, cluster series only from the
controller, and values a dashboard can trust."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from corral.agent.snapshot import ActionTimes, AgentSnapshot, InstanceView
from corral.api import Reader, Source, make_app
from corral.auth.tokens import create
from corral.records import AssignedInstance, AssignRecord, MaintenanceRecord
from corral.spec import load_spec_text
from corral.store import Keys
from corral.store.memory import MemoryStore

GOLDEN = Path(__file__).with_name("data") / "metrics.txt"
SPEC = load_spec_text("""
cluster: metrics
nodes: {n1: {address: 198.18.0.11}, n2: {address: 198.18.0.12, kind: remote}}
resources:
  web: {process: "sleep 1000"}
  db: {process: "sleep 1000", mode: active-passive}
""")
KEYS = Keys("metrics")
WEB = InstanceView("web", "web", None, "started", "healthy", "healthy", False, False)
DB = InstanceView("db", "db", None, "started", "unhealthy", "unhealthy", False, True, "down")


def snapshot(controller: bool) -> AgentSnapshot:
    now, times = time.monotonic(), ActionTimes()
    for seconds in (0.02, 0.3, 7.0):
        times.observe("start", seconds)
    return AgentSnapshot(
        "metrics", "n1", now, time.time(), 3.0, lease=1, lease_deadline=now + 2,
        controller=controller, instances=(WEB, DB), resources=frozenset(SPEC.resources),
        spec=SPEC, maintenance=frozenset({"db"}), events=(("start", 3), ("fence", 1)),
        actions=times.frozen(),
    )  # fmt: skip


async def scrape(controller: bool) -> dict[str, list[tuple[dict[str, str], float]]]:
    store = MemoryStore()
    token, _ = await create(store, KEYS, "prom", "viewer", by="root", now=0.0)
    await store.put(KEYS.admin("maintenance"), MaintenanceRecord(nodes=("n2",)).dump())
    web = AssignRecord((AssignedInstance("n1"), AssignedInstance("n2")))
    await store.put(KEYS.assign("web"), web.dump())
    snap = snapshot(controller)
    app = make_app(Source(lambda: snap), Reader(lambda: snap, lambda: store))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        assert (await client.get("/metrics")).status_code == 401
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        f"{family.type} {family.name}": [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(r.text)
    }


def test_metric_names_are_golden() -> None:
    names = sorted(asyncio.run(scrape(controller=True)))
    text = "\n".join(names) + "\n"
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "metric names changed: review, then CORRAL_UPDATE_GOLDEN=1"


def test_cluster_series_only_from_the_controller() -> None:
    follower = asyncio.run(scrape(controller=False))
    assert not [n for n in follower if "corral_cluster_" in n]
    leader = asyncio.run(scrape(controller=True))
    assert [s for n, s in leader.items() if "cluster_maintenance" in n] == [
        [({"scope": "cluster", "level": "node", "target": "n2"}, 1.0)]
    ]


def test_values_say_what_runs_here() -> None:
    got = asyncio.run(scrape(controller=False))
    healthy = {s[0]["resource"]: s[1] for s in got["gauge corral_instance_healthy"]}
    assert healthy == {"web": 1.0, "db": 0.0}
    assert got["gauge corral_instance_maintenance"] == [({"node": "n1", "resource": "db"}, 1.0)]
    buckets = {
        s[0]["le"]: s[1] for s in got["histogram corral_action_duration_seconds"] if "le" in s[0]
    }
    assert (buckets["0.05"], buckets["0.5"], buckets["10.0"], buckets["+Inf"]) == (1, 2, 3, 3)
    events = {s[0]["kind"]: s[1] for s in got["counter corral_events"] if "kind" in s[0]}
    assert events == {"start": 3.0, "fence": 1.0}
    assert replace(snapshot(False), lease=None).lease is None
