"""``/metrics``: Prometheus text made in process at each scrape (prometheus-client), never a
subprocess per scrape (the ha_cluster_exporter's way).

Two scopes, so that cluster-wide series do not multiply with the number of nodes:
- **node** series, on every agent, labelled ``node``: what this agent knows first-hand (its
  snapshot: lease, controller, store reached, its instances and their health, the events it
  wrote by kind, how long its actions took);
- **cluster** series (``corral_cluster_*``, label ``scope="cluster"``), only from the agent
  that is the controller (read from the store at the scrape): node states, every instance's
  state by resource/node/role, fail counts, maintenance at every level, assignments.
  Scrape every agent: exactly one of them exports these at a time (none during a change of
  controller).

Metric names are held by a golden file (``tests/api/data/metrics.txt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corral import __version__
from corral.agent.snapshot import BUCKETS, AgentSnapshot
from corral.api.auth import Refused
from corral.api.read import Reader, Unavailable
from corral.records import read_records, states
from corral.spec import Spec
from corral.store import Keys, KeyValue

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def node_metrics(snap: AgentSnapshot, now: float) -> Iterator[Metric]:
    """The node series of ``snap`` (CLOCK_MONOTONIC ``now``)."""
    n = snap.node
    info = _gauge("corral_build_info", "corral's version on this node", ["node", "version"])
    info.add_metric([n, __version__], 1)
    yield info
    for name, doc, value in [
        ("corral_agent_state_age_seconds", "age of the agent's last snapshot", snap.age(now)),
        ("corral_agent_stale", "1: the control loop is stalled past its bound", snap.stale(now)),
        ("corral_controller", "1: this node is the controller", snap.controller),
        ("corral_etcd_reachable", "1: the last round reached the store", snap.store_ok),
        ("corral_node_lease_remaining_seconds", "until the rule-1 deadline (0: none)",
         max(0.0, snap.lease_deadline - now) if math.isfinite(snap.lease_deadline) else 0.0),
    ]:  # fmt: skip
        family = _gauge(name, doc, ["node"])
        family.add_metric([n], float(value))
        yield family
    healthy = _gauge(
        "corral_instance_healthy",
        "1: the instance runs here and passes its checks",
        ["node", "resource", "item", "role"],
    )
    frozen = _gauge("corral_instance_maintenance", "1: in maintenance here", ["node", "resource"])
    for inst in snap.instances:
        up = inst.reported == "healthy" and not inst.failed
        healthy.add_metric([n, inst.resource, inst.item or "", inst.role], float(up))
    for resource in sorted(snap.maintenance):
        frozen.add_metric([n, resource], 1.0)
    yield healthy
    yield frozen
    events = CounterMetricFamily(
        "corral_events", "events this agent wrote", labels=["node", "kind"]
    )
    for kind, count in snap.events:
        events.add_metric([n, kind], count)
    yield events
    alerts = CounterMetricFamily(
        "corral_alert_deliveries",
        "tries of alert deliveries by this agent, by sink and outcome (delivered, retry, failed)",
        labels=["node", "sink", "outcome"],
    )
    for sink, outcome, count in snap.alerts:
        alerts.add_metric([n, sink, outcome], count)
    yield alerts
    yield _histogram(
        "corral_action_duration_seconds", "how long actions took", "action", n, snap.actions
    )
    yield _histogram(
        "corral_alert_delivery_seconds",
        "seconds from an event to its delivery, by sink (deliveries by this agent)",
        "sink", n, snap.alert_latency,
    )  # fmt: skip


def _histogram(
    name: str, doc: str, label: str, node: str, rows: tuple[tuple[str, tuple[int, ...], float], ...]
) -> HistogramMetricFamily:
    """One histogram family from :meth:`ActionTimes.frozen` rows (``BUCKETS``)."""
    family = HistogramMetricFamily(name, doc, labels=["node", label])
    edges = [*(str(b) for b in BUCKETS), "+Inf"]
    for value, cumulative, total in rows:
        family.add_metric([node, value], list(zip(edges, cumulative, strict=True)), total)
    return family


def cluster_metrics(spec: Spec, keys: Keys, kvs: list[KeyValue], revision: int) -> Iterator[Metric]:
    """The cluster series, from one read of the store (the controller's scrape only)."""
    records = read_records(keys, kvs)
    scope = ["cluster"]
    rev = _gauge("corral_cluster_store_revision", "the store revision read", ["scope"])
    rev.add_metric(scope, revision)
    yield rev
    node_state = _gauge(
        "corral_cluster_node_state", "1 for the node's state", ["scope", "node", "state"]
    )
    for node, state in states(spec, records).items():
        node_state.add_metric([*scope, node, state], 1.0)
    yield node_state
    inst = _gauge(
        "corral_cluster_instance_state", "1 per reported instance and health",
        ["scope", "resource", "node", "item", "role", "health"],
    )  # fmt: skip
    for (node, resource), status in sorted(records.status.items()):
        for i in status.instances:
            inst.add_metric([*scope, resource, node, i.item or "", i.role, i.health], 1.0)
    yield inst
    assigned = _gauge(
        "corral_cluster_assigned_instances", "instances assigned", ["scope", "resource"]
    )
    for resource, record in sorted(records.assign.items()):
        assigned.add_metric([*scope, resource], len(record.instances))
    yield assigned
    fails = _gauge("corral_cluster_failcount", "failures counted", ["scope", "resource", "node"])
    for (node, resource), count in sorted(records.failcounts.items()):
        fails.add_metric([*scope, resource, node], count.count)
    yield fails
    yield _maintenance(records.admin.maintenance.to_value())


def _maintenance(record: dict[str, object]) -> GaugeMetricFamily:
    family = _gauge(
        "corral_cluster_maintenance", "1 per maintenance in force", ["scope", "level", "target"]
    )
    if record.get("cluster") is True:
        family.add_metric(["cluster", "cluster", ""], 1.0)
    for level in ("nodes", "resources", "instances"):
        targets = record.get(level)
        for target in targets if isinstance(targets, list) else []:
            family.add_metric(["cluster", level.rstrip("s"), str(target)], 1.0)
    return family


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def exposition(families: Iterable[Metric]) -> bytes:
    """The Prometheus text of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


REFRESH = 5.0  # seconds a rendering of the cluster series is served before a new one


class ClusterSeries:
    """The cluster series, rendered off the API's event loop (a worker thread: parsing every
    record of a large cluster takes long, and the health endpoints must not wait for it). A
    scrape gets the last rendering at once, and starts a new one when it is older than
    ``REFRESH``: the series are at most one scrape interval (plus ``REFRESH``) old, and
    ``corral_cluster_series_age_seconds`` says how old. Only the first scrape waits for a
    rendering. A store that does not answer keeps the last one (its age grows)."""

    def __init__(self, reader: Reader, clock: Callable[[], float]) -> None:
        self._reader, self._clock = reader, clock
        self._text: bytes | None = None
        self._at = -math.inf
        self._task: asyncio.Task[None] | None = None

    async def _render(self) -> None:
        with contextlib.suppress(Unavailable):
            c = await self._reader.cluster()
            families = cluster_metrics(c.spec, c.keys, c.kvs, c.revision)
            started = self._clock()
            self._text = await asyncio.to_thread(lambda: exposition(families))
            self._at = started

    async def text(self) -> tuple[bytes, float]:
        """(the cluster series' text, its age in seconds); ``b""`` when none could be made."""
        stale = self._clock() - self._at > REFRESH
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._render())
        if self._text is None and self._task is not None:
            await asyncio.shield(self._task)
        return self._text or b"", self._clock() - self._at


def metrics_routes(reader: Reader, clock: Callable[[], float] = time.monotonic) -> list[Route]:
    """``/metrics`` (a viewer's token: Prometheus sends it with ``authorization:
    {credentials_file: ...}``). A store that does not answer leaves the cluster series out
    (``corral_etcd_reachable`` says why), never the scrape."""
    series = ClusterSeries(reader, clock)

    async def scrape(request: Request) -> Response:
        try:
            await reader.tokens.identity(request.headers.get("authorization"), "viewer")
        except Refused as exc:
            return JSONResponse({"reason": exc.reason}, exc.status)
        except Unavailable as exc:
            return JSONResponse({"reason": str(exc)}, 503)
        snap = reader.latest()
        if snap is None:
            return JSONResponse({"reason": "the agent has not finished its first turn"}, 503)
        families = list(node_metrics(snap, clock()))
        cluster = b""
        if snap.controller:
            cluster, age = await series.text()
            if cluster:
                families.append(_age(age))
        return Response(exposition(families) + cluster, media_type=CONTENT_TYPE)

    return [Route("/metrics", scrape)]


def _age(age: float) -> GaugeMetricFamily:
    family = _gauge("corral_cluster_series_age_seconds", "age of the cluster series", ["scope"])
    family.add_metric(["cluster"], age)
    return family
