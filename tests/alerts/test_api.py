"""``GET /v1/alerts`` (what ``corral alerts log --json`` prints): the deliveries done, then
every pending one, in event order; and the delivery counts in ``/metrics``."""

from __future__ import annotations

import time

import httpx

from corral.agent.snapshot import ActionTimes, AgentSnapshot
from corral.api import Reader, Source, make_app
from corral.auth.tokens import create
from corral.records import DeliveryRecord, DutyRecord, Event
from corral.spec import load_spec_text
from corral.store import Keys
from corral.store.memory import MemoryStore

SPEC = load_spec_text("""
cluster: alrt
nodes: {n1: {address: 198.18.0.11}}
alerts: {hook: {webhook: "http://127.0.0.1:9/"}}
""")
KEYS = Keys("alrt")


async def test_the_alert_log_and_the_delivery_counts() -> None:
    store = MemoryStore()
    token, _ = await create(store, KEYS, "view", "viewer", by="root", now=0.0)
    done = DeliveryRecord("delivered", 4, 0.42, 10.0, "n1", "", "fence", "n2", "")
    await store.put(KEYS.alert_log("hook", "0001-n1"), done.dump())
    event = Event(11.0, "n1", "web", "failed", "stop of web failed: x")
    owed = DutyRecord("n1", 5, event, tried=2, next_at=12.0, error="HTTP 500")
    await store.put(KEYS.alert_duty("hook", "0002-n1"), owed.dump())
    now = time.monotonic()
    latency = ActionTimes()
    latency.observe("hook", 0.42)
    snap = AgentSnapshot(
        "alrt", "n1", now, time.time(), 3.0, spec=SPEC, lease=1,
        alerts=(("hook", "delivered", 1), ("hook", "retry", 3)), alert_latency=latency.frozen(),
    )  # fmt: skip
    app = make_app(Source(lambda: snap), Reader(lambda: snap, lambda: store))
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        rows = (await client.get("/v1/alerts", headers=headers)).json()["alerts"]
        metrics = (await client.get("/metrics", headers=headers)).text
    assert [(r["event"], r["status"], r["tried"], r["by"]) for r in rows] == [
        ("0001-n1", "delivered", 4, "n1"), ("0002-n1", "pending", 2, "n1"),
    ]  # fmt: skip
    assert rows[1]["error"] == "HTTP 500" and rows[1]["resource"] == "web"
    assert 'corral_alert_deliveries_total{node="n1",outcome="retry",sink="hook"} 3.0' in metrics
    assert 'corral_alert_delivery_seconds_bucket{le="0.5",node="n1",sink="hook"} 1.0' in metrics
    assert 'corral_alert_delivery_seconds_bucket{le="0.25",node="n1",sink="hook"} 0.0' in metrics
