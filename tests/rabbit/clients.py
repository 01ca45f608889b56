"""Clients of the real-broker lab (:mod:`tests.rabbit.lab`): declare a quorum queue, publish
with publisher confirms, read every message back, and wait until a queue's members are on disk.

Measured here: when all three brokers were killed -9 a few seconds after a quorum queue's
declaration, the queue came back empty on every node (its 300 confirmed messages orphaned):
RabbitMQ 3.10 registers each queue member in Ra's directory (``names.dets``), which reaches
the disk about 1 s after the declaration's answer; a node that boots without the
registration creates a new, empty member, and the queue has no leader with the data. Earlier
the queue's mnesia record was seen missing the same way. Messages confirmed to a queue whose
members were already on disk survive (:func:`registered_everywhere` waits for that). A full
power loss right after a declaration is RabbitMQ's limit, not one corral can fix: declare
queues at deploy time, not just before publishing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import aio_pika
import psutil
import pytest

from corral.lab.workload import publish_confirmed
from tests.rabbit.lab import NODES, RabbitLab

NEEDS_BROKERS = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists()
    or shutil.which("ip") is None,
    reason="needs root, iproute2 and rabbitmq-server (make server-packages)",
)  # fmt: skip
MESSAGES = 300
QUEUE = "orders"


async def declare(lab: RabbitLab, node: str) -> None:
    conn = await lab.connect(node)
    try:
        channel = await conn.channel()
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        await conn.close()


async def publish(lab: RabbitLab, node: str, count: int, tag: str = "m") -> set[str]:
    """Publish ``count`` persistent messages to the quorum queue with publisher confirms;
    the bodies the broker confirmed (``tag`` then a number: another tag, other bodies)."""
    conn = await lab.connect(node)
    try:
        return await publish_confirmed(
            await conn.channel(publisher_confirms=True), QUEUE, count, tag
        )
    finally:
        await conn.close()


async def _count(lab: RabbitLab, node: str) -> int:
    """The queue's message count as ``node`` answers it; -1 while it cannot (the queue's
    metadata or its leader is not back yet: aiormq reports a missing queue as a cancel)."""
    try:
        conn = await lab.connect(node)
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError):
        return -1
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(QUEUE, passive=True)
        count = queue.declaration_result.message_count
        return int(count) if count is not None else -1
    except (aio_pika.exceptions.AMQPError, asyncio.CancelledError, TimeoutError):
        return -1
    finally:
        await conn.close()


async def drain(lab: RabbitLab, node: str, expect: int, timeout: float = 90.0) -> set[str]:
    """Every message in the queue, read from ``node`` until ``expect`` were read or the queue
    is empty once it had counted ``expect`` (or at ``timeout``, whatever was read by then).

    A ``basic.get`` can time out while the quorum queue's leader is still being elected after
    the restart (seen in CI: aiormq's 5 s RPC timeout); the read is then retried on a new
    connection. Messages are taken without ack, so nothing read twice is counted twice.
    """
    counted_by = time.monotonic() + timeout * 2 / 3  # leaves time to read what is there
    deadline = time.monotonic() + timeout
    while time.monotonic() < counted_by:
        if await _count(lab, node) >= expect:
            break
        await asyncio.sleep(1.0)
    got: set[str] = set()
    while len(got) < expect and time.monotonic() < deadline:
        try:
            if await _take(lab, node, got):
                break  # the queue answered "empty"
        except (aio_pika.exceptions.AMQPError, asyncio.CancelledError, TimeoutError, OSError):
            await asyncio.sleep(1.0)
    return got


async def _take(lab: RabbitLab, node: str, got: set[str]) -> bool:
    """Read messages into ``got`` until the queue answers empty (True); errors propagate."""
    conn = await lab.connect(node)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(QUEUE, passive=True)
        while (msg := await queue.get(no_ack=True, fail=False, timeout=10)) is not None:
            got.add(msg.body.decode())
        return True
    finally:
        await conn.close()


def _registered(lab: RabbitLab, node: str) -> bool:
    """``node``'s Ra directory on disk (``names.dets``) names a queue member it holds."""
    root = lab.servers[node].mnesia / "quorum" / f"rabbit@{node}"
    names = root / "names.dets"
    if not names.exists():
        return False
    data = names.read_bytes()
    return any(d.name.encode() in data for d in root.iterdir() if d.is_dir())


async def registered_everywhere(lab: RabbitLab, timeout: float) -> None:
    """Wait until every node's quorum-queue member is registered on disk (about 1 s after
    the declaration here): a node killed before that re-creates the member empty on its next
    boot, and the confirmed messages stay behind in the old member's directory (seen in CI)."""
    deadline = time.monotonic() + timeout
    while not all(_registered(lab, n) for n in NODES):
        assert time.monotonic() < deadline, "a queue member never reached names.dets"
        await asyncio.sleep(0.2)


def our_processes(base: Path) -> list[str]:
    """Processes whose command line or environment names the lab's directory."""
    left = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or [])
            if str(base) in text or any(str(base) in v for v in proc.environ().values()):
                left.append(f"{proc.info['pid']} {proc.info['name']}")
        except psutil.Error:
            continue
    return left
