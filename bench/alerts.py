#!/usr/bin/env python3
"""Alerts end to end: three real agents on loopback over a real 3-member etcd
(:mod:`corral.lab.loopback`), a stand-in fence device (exit 0: the node's power switch) and
webhooks on loopback (:mod:`corral.lab.hook`).

Scenarios, each run on the same cluster:

- ``power-off``: a node that is not the controller loses power (its agent, lease guard and
  services killed -9). Figures: from the fault to the ``fencing`` alert at the webhook
  (target p95 < 2 s), and from the fence event's write (its time) to the webhook (target
  p95 < 0.2 s). Baseline in the same run: from the fault to the fence event's write (the
  detection and the fence, which alerts cannot beat). The node is powered on again after.
- ``flaky``: a second webhook answers 500 three times to each event, then 200: each event
  must be answered 200 exactly once (by its dedup id), after four tries.
- ``owner-killed``: a test alert to a webhook that fails until the agent that owes it (the
  controller) is killed -9; it is fixed at the kill. Figure: from the kill to the delivery by
  another agent (target < 5 s). Baseline: the node lease TTL (what the takeover waits for
  without a fence).

A run that fails is named under the table and in the JSON (``failures``); the exit status is
then 1. ``--quick``: 3 power-offs and 1 owner kill (else 10 and 3).

Usage: bench/alerts.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.core.alerts import TEST_KIND
from corral.lab.hook import Hook
from corral.lab.loopback import NODES, Cluster
from corral.records import Event
from corral.records.alerts import read_deliveries
from corral.spec.profiles import profile_timing
from corral.store import EtcdStore, Keys

KEYS = Keys("agenttest")
Scenario = Callable[[Cluster, EtcdStore, Hook], Awaitable[dict[str, float]]]
LIMIT = 30.0  # seconds: the longest wait for anything (the machine is shared)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def until(check: Callable[[], object], what: str, limit: float = LIMIT) -> object:
    start = time.monotonic()
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() - start > limit:
            raise TimeoutError(f"{what}: not within {limit:g} s")
        await asyncio.sleep(0.01)


async def controller(store: EtcdStore) -> str:
    kv = await store.get(KEYS.controller)
    return kv.value.decode() if kv is not None else ""


async def power_off_run(cluster: Cluster, store: EtcdStore, hook: Hook) -> dict[str, float]:
    await cluster.wait_settled(store, LIMIT * 2)  # after a failed run too
    boss = await controller(store)
    victim = next(n for n in NODES if n != boss)
    began = time.time()
    cluster.power_off(victim)

    def fenced() -> dict[str, object] | None:
        return next(
            (b for t, b, s in list(hook.posts)
             if s == 200 and b.get("kind") == "fencing" and b.get("node") == victim
             and float(str(b.get("time"))) >= began),
            None,
        )  # fmt: skip

    try:
        body = await until(fenced, f"the fencing alert of {victim}")
    finally:
        cluster.start_agent(victim)  # powered on again, for the next run
    assert isinstance(body, dict)
    at = next(t for t, b, _ in hook.posts if b is body)
    written = float(body["time"])
    await cluster.wait_settled(store, LIMIT * 2)
    return {"from_fault": at - began, "from_write": at - written, "fault_to_event": written - began}


async def owner_killed_run(cluster: Cluster, store: EtcdStore, hook: Hook) -> dict[str, float]:
    await cluster.wait_settled(store, LIMIT * 2)
    boss = await controller(store)
    hook.fail_first = 10**6  # every try fails while the owner lives
    now = time.time()
    key = KEYS.event_key(int(now * 1e9), "alert-test")
    await store.put(key, Event(now, "alert-test", "stuck", TEST_KIND, "bench").dump())
    event_id = key.decode().rsplit("/", 1)[1]
    await until(lambda: any(b.get("event") == event_id for _, b, _ in list(hook.posts)), "a try")
    began = time.time()
    cluster.kill_agent(boss)
    hook.fail_first = 0
    try:
        first = await until(lambda: hook.first_delivery(event_id), "the delivery by another")
    finally:
        cluster.start_agent(boss)
    assert isinstance(first, float)
    records = read_deliveries(KEYS, (await store.range(KEYS.root_prefix)).kvs)
    by = next((r.by for s, e, r in records if e == event_id), "")
    took = first - began
    await cluster.wait_settled(store, LIMIT * 2)
    if by == boss:
        raise AssertionError(f"delivered by the killed owner {boss}?")
    return {"owner_killed": took}


async def bench(runs: int, kills: int, base: Path) -> dict[str, object]:
    hooks = {"hook": Hook().start(), "flaky": Hook(fail_first=3).start(), "stuck": Hook().start()}
    cluster = Cluster(base)
    cluster.add_alerts({
        name: f'{{webhook: "{hook.url}", backoff: 100ms, max_backoff: 500ms, timeout: 2s}}'
        for name, hook in hooks.items()
    })  # fmt: skip
    figures: dict[str, list[float]] = {}
    failures: list[str] = []
    try:
        await cluster.start()
        store = EtcdStore(cluster.etcd.endpoints)
        await cluster.wait_settled(store, LIMIT * 2)
        scenarios: list[tuple[str, int, Scenario, Hook]] = [
            ("power-off", runs, power_off_run, hooks["hook"]),
            ("owner-killed", kills, owner_killed_run, hooks["stuck"]),
        ]
        for name, count, scenario, hook in scenarios:
            for i in range(count):
                try:
                    for k, v in (await scenario(cluster, store, hook)).items():
                        figures.setdefault(k, []).append(v)
                except (TimeoutError, AssertionError) as exc:
                    failures.append(f"{name} run {i + 1}: {exc}")

        def events_of(hook: Hook) -> set[str]:
            return {i.split("/", 2)[2] for i in hook.delivered()}

        with contextlib.suppress(TimeoutError):  # the flaky hook's last retries
            await until(lambda: events_of(hooks["flaky"]) >= events_of(hooks["hook"]), "flaky")
        flaky = hooks["flaky"].delivered()
        same = events_of(hooks["flaky"]) == events_of(hooks["hook"])
        missing = sorted(events_of(hooks["hook"]) ^ events_of(hooks["flaky"]))
        once = bool(flaky) and all(n == 1 for n in flaky.values())
        tries = len(hooks["flaky"].posts) / max(1, len(flaky))
        await store.close()
    finally:
        await cluster.stop()
        for hook in hooks.values():
            hook.close()
    return {
        "figures": figures,
        "flaky": {"events": len(flaky), "exactly_once": once, "same_events": same,
                  "posts_per_event": tries, "not_in_both": missing},
        "failures": failures,
    }  # fmt: skip


def report(result: dict[str, object], quick: bool) -> dict[str, object]:
    figures = result["figures"]
    assert isinstance(figures, dict)
    ttl = profile_timing("lan").lease_ttl
    rows = {}
    for name, target, baseline, base_name in (
        ("from_fault", 2.0, "fault_to_event", "fault -> fence event"),
        ("from_write", 0.2, None, ""),
        ("owner_killed", 5.0, None, f"lease TTL {ttl:g}s"),
    ):
        values = figures.get(name, [])
        if not values:
            continue
        base = figures.get(baseline or "", [])
        rows[name] = {
            "n": len(values), "median": statistics.median(values), "p95": p95(values),
            "max": max(values), "target": target,
            "baseline": statistics.median(base) if base else (ttl if base_name else None),
            "baseline_is": base_name,
        }  # fmt: skip
    return {"quick": quick, "rows": rows, "flaky": result["flaky"], "failures": result["failures"]}


def show(out: dict[str, object]) -> None:
    table = Table("figure (s)", "n", "median", "p95", "max", "target", "baseline", "ratio",
                  box=None, header_style="bold")  # fmt: skip
    rows = out["rows"]
    assert isinstance(rows, dict)
    for name, r in rows.items():
        base = r["baseline"]
        ratio = f"{r['median'] / base:.2f} ({r['baseline_is']})" if base else "-"
        table.add_row(name, str(r["n"]), f"{r['median']:.3f}", f"{r['p95']:.3f}",
                      f"{r['max']:.3f}", f"< {r['target']:g}", f"{base:.3f}" if base else "-",
                      ratio)  # fmt: skip
    console = Console(highlight=False)
    console.print(table)
    console.print(f"flaky webhook (500 x3, then 200): {out['flaky']}", markup=False)
    for failure in out["failures"]:  # type: ignore[attr-defined]
        console.print(f"FAILED: {failure}", markup=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs, kills = (3, 1) if args.quick else (10, 3)
    with tempfile.TemporaryDirectory(prefix="corral-bench-alerts-") as tmp:
        try:
            result = asyncio.run(bench(runs, kills, Path(tmp)))
        except Exception as exc:  # a lab that did not come up: said, no traceback
            print(f"bench/alerts.py failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if result["failures"]:  # the agents' logs outlive the lab, to see why
            kept = Path(tempfile.mkdtemp(prefix="corral-bench-alerts-logs-"))
            for log in Path(tmp).glob("agent-*.log"):
                shutil.copy(log, kept)
            print(f"agent logs kept in {kept}", file=sys.stderr)
    out = report(result, args.quick)
    show(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    flaky = out["flaky"]
    assert isinstance(flaky, dict)
    ok = not out["failures"] and flaky["exactly_once"] and flaky["same_events"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
