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
- **last-running node gone**: a stops cleanly, then b and c are killed together (the
  last-running set is {b, c}) and c never comes back (fenced). b waits for it (RabbitMQ
  would wait 10 x 30 s and fail), then, after the configured wait (10 s here), exactly one
  node force-boots (the claim) and a follows. ``last_gone_recover_s`` (the wait included),
  ``last_gone_force_boots`` (1), ``last_gone_lost``: confirmed messages missing (a quorum
  queue of three with one member gone still has its majority).

What Pacemaker's ``rabbitmq-cluster`` agent does in these cases (cited from its code, not
measured): the first node started with no running peer starts alone after wiping its data,
the others wipe theirs and join it, so the wrong order loses what the last-running node had
and that the first one did not; a replaced node is handled the same way (wipe, forget, join).

Usage: bench/rabbit_stateful.py [--quick] [--json FILE]   (root; make server-packages)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.rabbit.clients import MESSAGES, declare, drain, publish
from tests.rabbit.lab import NODES, RabbitLab, rabbit_lab

from _rabbit import bench_main
from corral.core.rabbit import Cluster, Policy, decide


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
    got = await drain(lab, "a", len(confirmed))
    return {"wrong_order_recover_s": recover, "wrong_order_lost": len(confirmed - got)}


async def _replaced(lab: RabbitLab) -> dict[str, float]:
    confirmed = await publish(lab, "a", MESSAGES)
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
    got = await drain(lab, "c", len(confirmed))
    return {
        "replaced_recover_s": recover,
        "replaced_in_queue": float("rabbit@c" in members),
        "replaced_lost": len(confirmed - got),
    }


async def _last_gone(lab: RabbitLab) -> dict[str, float]:
    """a stops cleanly, then b and c are killed together: the last-running set is {b, c}.
    c never comes back (fenced): b waits for it, then force-boots once, and a follows."""
    confirmed = await publish(lab, "b", MESSAGES)
    await lab.servers["a"].stop()
    lab.note_running(await lab.reports())
    await asyncio.gather(lab.servers["b"].kill(), lab.servers["c"].kill())
    began = time.monotonic()
    history = await lab.converge(
        timeout=150, present=frozenset("ab"), gone={"c": "fenced"}, policy=Policy(10.0)
    )
    recover = time.monotonic() - began
    boots = [d.node for _, p in history for d in p.decisions.values() if d.action == "force_boot"]
    got = await drain(lab, "b", len(confirmed))
    return {
        "last_gone_recover_s": recover,  # includes the 10 s wait
        "last_gone_force_boots": float(len(set(boots))),
        "last_gone_lost": len(confirmed - got),
    }


async def run(quick: bool = False) -> dict[str, float]:  # one run either way
    base = Path(tempfile.mkdtemp(prefix="corral-bench-rabbit-"))
    try:
        async with rabbit_lab(base) as lab:
            await lab.converge(timeout=150)
            await declare(lab, "b")
            confirmed = await publish(lab, "b", MESSAGES)
            figures = await _wrong_order(lab, confirmed)
            figures.update(await _replaced(lab))
            figures.update(await _last_gone(lab))
            return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    return bench_main(__doc__ or "", "RabbitMQ recovery on real brokers (one run)", run)


if __name__ == "__main__":
    sys.exit(main())
