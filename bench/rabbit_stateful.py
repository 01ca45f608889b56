#!/usr/bin/env python3
"""RabbitMQ's slower recovery paths on real brokers, driven by corral's decisions.

Three RabbitMQ 3.10 brokers in network namespaces (the test lab, ``tests/rabbit/lab.py``), a
quorum queue filled with publisher-confirmed messages, then:

- **wrong order**: the brokers stop one after the other (a, then b, then c) and come back in
  the wrong order: a's agent first, then b's, then c's. ``pause_minority`` pauses c as soon
  as b stops (one node of three is a minority), so the last-running set is {b, c}: until c
  is back the decisions keep a waiting and claim no force_boot (checked); b may start, and
  RabbitMQ holds it until c is back. ``wrong_order_recover_s``: from c's return until all
  three serve; ``wrong_order_lost``: confirmed messages missing afterwards.
- **replaced**: c's broker is killed and its directory wiped (new disks); its agent reports a
  node without data. The decisions make a running member forget the old c, the new c join
  and be added back to the quorum queue (``rabbitmq-queues grow``).
  ``replaced_recover_s``: from the new c's report until it serves; ``replaced_in_queue``: 1
  when c is a member of the queue again; ``replaced_lost``: confirmed messages missing.

What Pacemaker's ``rabbitmq-cluster`` agent does in these cases (cited from its code, not
measured): the first node started with no running peer starts alone after wiping its data,
the others wipe theirs and join it, so the wrong order loses what the last-running node had
and that the first one did not; a replaced node is handled the same way (wipe, forget, join).

Usage: bench/rabbit_stateful.py [--quick] [--json FILE]   (root; make rabbitmq-packages)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab

from rich.console import Console
from rich.table import Table
from tests.rabbit.lab import NODES, RabbitLab, rabbit_lab
from tests.rabbit.test_real import MESSAGES, _declare, _drain, _publish

from corral.core.rabbit import Cluster, decide


async def _wrong_order(lab: RabbitLab, confirmed: set[str]) -> dict[str, float]:
    for node in NODES:  # a, then b, then c: each one's agent sees the others stop
        await lab.servers[node].stop()
        reports = await lab.reports()
        lab.note_running(reports)
    for back in ({"a"}, {"a", "b"}):
        reports = {n: r for n, r in (await lab.reports()).items() if n in back}
        plan = decide(Cluster(NODES, reports, dict(lab.records)), time.time())
        # pause_minority paused c when b stopped, so b and c were the last to run: b may
        # start (RabbitMQ holds it until c is back); a, which stopped first, waits
        assert plan.decisions["a"].action == "wait", plan
        assert plan.claim is None, plan
    began = time.monotonic()
    await lab.converge(timeout=150)
    recover = time.monotonic() - began
    # the drain consumes: publish again for the next scenario
    got = await _drain(lab, "a", len(confirmed))
    return {"wrong_order_recover_s": recover, "wrong_order_lost": len(confirmed - got)}


async def _replaced(lab: RabbitLab) -> dict[str, float]:
    confirmed = await _publish(lab, "a", MESSAGES)
    server = lab.servers["c"]
    await server.kill()
    shutil.rmtree(server.base)  # new disks
    await server.prepare()
    began = time.monotonic()
    await lab.converge(timeout=150)
    recover = time.monotonic() - began
    done = await lab.servers["a"].ctl(
        "rabbitmqctl", "list_queues", "name", "members", "--formatter", "json"
    )
    members = json.loads(done.stdout)[0]["members"]
    got = await _drain(lab, "c", len(confirmed))
    return {
        "replaced_recover_s": recover,
        "replaced_in_queue": float("rabbit@c" in members),
        "replaced_lost": len(confirmed - got),
    }


async def run() -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="corral-bench-rabbit-"))
    try:
        async with rabbit_lab(base) as lab:
            await lab.converge(timeout=150)
            await _declare(lab, "b")
            confirmed = await _publish(lab, "b", MESSAGES)
            figures = await _wrong_order(lab, confirmed)
            figures.update(await _replaced(lab))
            return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same single run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console()
    try:
        figures = asyncio.run(run())
    except Exception as exc:  # a failing run is reported, no traceback
        console.print(f"[red]bench failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    table = Table(title="RabbitMQ recovery on real brokers (one run)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:.2f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
