"""The demo's stateful clients: writes to MariaDB through a VIP, and a quorum queue's messages.

Two clients, each kept small and honest about what counts:

- **Database** (PyMySQL, run in the lab's client namespace as ``python -m
  corral.lab.workload``): ``writes`` inserts rows ``0, 1, 2, ...`` one at a time in autocommit
  (a row counts as *acknowledged* only when the server answered the INSERT), on one connection
  that is opened again after any error (1 s connect timeout, 1 s read/write timeouts: a dead
  HAProxy behind a moved VIP does not hang it), and writes every attempt to a JSON file;
  ``read`` prints the ids the table holds. :func:`summarize_writes` (pure) turns the attempts
  into the figures the demo prints: acknowledged writes, how long writes failed after the
  fault (the longest gap between two acknowledged writes, less one interval), and, with the
  ids read back, the acknowledged writes lost.
- **Queue** (aio-pika, from the caller's process through the client namespace's transport):
  :func:`publish` declares a durable quorum queue on a node and publishes persistent messages
  with publisher confirms (a message counts when the broker confirmed it);
  :func:`drain` reads every message back from another node, retrying while the queue's new
  leader is elected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATABASE, TABLE = "corral_demo", "writes"
Attempt = tuple[float, int, bool]  # wall time, row id, acknowledged


def _connect(host: str, port: int, user: str, password: str) -> Any:
    import pymysql

    return pymysql.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database=DATABASE,
        autocommit=True,
        connect_timeout=1,
        read_timeout=1,
        write_timeout=1,
    )


def writes(
    host: str, port: int, user: str, password: str, duration: float, interval: float, out: Path
) -> int:
    """Insert rows for ``duration`` seconds, one every ``interval``; every attempt to ``out``.
    Returns the number acknowledged."""
    attempts: list[Attempt] = []
    conn: Any = None
    end, i = time.monotonic() + duration, 0
    while time.monotonic() < end:
        began = time.monotonic()
        try:
            if conn is None:
                conn = _connect(host, port, user, password)
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id, t) VALUES (%s, %s)", (i, time.time()))
            attempts.append((time.time(), i, True))
        except Exception:  # any failure: not acknowledged, a new connection next time
            attempts.append((time.time(), i, False))
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
        i += 1
        time.sleep(max(0.0, interval - (time.monotonic() - began)))
    with contextlib.suppress(Exception):
        conn.close()
    out.write_text(json.dumps({"interval": interval, "attempts": attempts}))
    return sum(1 for a in attempts if a[2])


def grant(sockets: Sequence[Path], user: str, password: str, timeout: float) -> Path:
    """Make the demo's database, table and user (all privileges on that database, from
    anywhere) as root through the first of ``sockets`` that answers (Galera replicates it to
    every member); the socket used. Retries until ``timeout``: a member may still be
    joining."""
    import pymysql

    deadline = time.monotonic() + timeout
    while True:
        for sock in sockets:
            try:
                conn = pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2)
            except (pymysql.MySQLError, OSError):
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} "
                        "(id INT PRIMARY KEY, t DOUBLE NOT NULL)"
                    )
                    cur.execute(
                        "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password)
                    )
                    cur.execute(f"GRANT ALL ON {DATABASE}.* TO %s@'%%'", (user,))
                return sock
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise
            finally:
                conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no member answered on {', '.join(map(str, sockets))}")
        time.sleep(0.5)


def read_ids(host: str, port: int, user: str, password: str, timeout: float) -> list[int]:
    """Every id the table holds, retrying connection errors until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = _connect(host, port, user, password)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM {TABLE}")
                    return [int(row[0]) for row in cur.fetchall()]
            finally:
                conn.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def summarize_writes(
    attempts: Sequence[Sequence[Any]], interval: float, fault: float, present: set[int]
) -> dict[str, Any]:
    """The write figures (pure): ``acked`` (all), ``acked_after_fault``, ``failed_s`` (the
    longest gap after ``fault`` between two acknowledged writes, less one ``interval``; 0 when
    none failed), ``failed`` attempts, and ``lost``: acknowledged ids not in ``present``."""
    acked = [(float(t), int(i)) for t, i, ok in attempts if ok]
    failed = [a for a in attempts if not a[2] and float(a[0]) >= fault]
    gap = 0.0
    before = [t for t, _ in acked if t < fault]
    times = ([before[-1]] if before else []) + [t for t, _ in acked if t >= fault]
    for a, b in itertools.pairwise(times):
        gap = max(gap, b - a - interval)
    return {
        "acked": len(acked),
        "acked_after_fault": sum(1 for t, _ in acked if t >= fault),
        "failed": len(failed),
        "failed_s": round(gap, 2) if failed else 0.0,
        "lost": sorted(i for _, i in acked if i not in present),
    }


# --- the queue --------------------------------------------------------------------------------

CONNECT_FOR = 30.0  # seconds: a broker just promoted may take that long to accept connections


async def wait_serving(
    hosts: Sequence[str], user: str, password: str, netns: str, port: int = 5672
) -> None:
    """Until each broker of ``hosts`` accepted one AMQP connection (each tried for up to
    ``CONNECT_FOR`` seconds; the last error is raised after that)."""
    import aio_pika

    from corral.drivers.rabbitmq_health import amqp_connect

    for host in hosts:
        deadline = time.monotonic() + CONNECT_FOR
        while True:
            try:
                await (await amqp_connect(host, port, user, password, 5.0, netns)).close()
                break
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


async def publish(
    host: str, user: str, password: str, netns: str, queue: str, count: int, port: int = 5672
) -> set[str]:
    """Declare durable quorum queue ``queue`` on ``host`` and publish ``count`` persistent
    messages with publisher confirms; the bodies the broker confirmed. The connection and the
    declaration are tried again for up to ``CONNECT_FOR`` seconds (a broker just promoted may
    still be booting: refused); the publishing is not (a message is never sent twice)."""
    import aio_pika

    from corral.drivers.rabbitmq_health import amqp_connect

    deadline = time.monotonic() + CONNECT_FOR
    while True:
        conn = None
        try:
            conn = await amqp_connect(host, port, user, password, 5.0, netns)
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
            break
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
            if conn is not None:
                await conn.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        return await publish_confirmed(channel, queue, count)
    finally:
        await conn.close()


async def publish_confirmed(channel: Any, queue: str, count: int, tag: str = "m") -> set[str]:
    """Publish ``count`` persistent messages ``<tag>0``, ``<tag>1``, ... to ``queue`` on
    ``channel`` (opened with publisher confirms); the bodies the broker confirmed."""
    import aio_pika

    confirmed = set()
    for i in range(count):
        body = f"{tag}{i}"
        await channel.default_exchange.publish(
            aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue,
        )  # returns once the broker confirmed it (a nack raises)
        confirmed.add(body)
    return confirmed


async def drain(
    host: str, user: str, password: str, netns: str, queue: str, expect: int, timeout: float
) -> set[str]:
    """Every message of ``queue`` read from ``host`` (without ack: nothing is counted twice),
    until ``expect`` were read, the queue answered empty after holding some, or ``timeout``;
    connection and RPC errors (a leader being elected) are retried."""
    import aio_pika

    from corral.drivers.rabbitmq_health import amqp_connect

    got: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        try:
            conn = await amqp_connect(host, 5672, user, password, 5.0, netns)
            try:
                channel = await conn.channel()
                q = await channel.declare_queue(queue, passive=True)
                while (msg := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
                    got.add(msg.body.decode())
                if got:
                    break
            finally:
                await conn.close()
        except (aio_pika.exceptions.AMQPError, asyncio.CancelledError, TimeoutError, OSError):
            pass
        await asyncio.sleep(0.5)
    return got


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.lab.workload")
    parser.add_argument("what", choices=["writes", "read"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ready", type=Path)
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip()
    if args.what == "read":
        print(json.dumps(read_ids(args.host, args.port, args.user, password, args.duration)))
        return 0
    if args.ready is not None:
        args.ready.touch()
    assert args.out is not None, "--out is required for writes"
    writes(args.host, args.port, args.user, password, args.duration, args.interval, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
