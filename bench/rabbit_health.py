#!/usr/bin/env python3
"""What a RabbitMQ health check costs: corral's kept-open AMQP check against the CLI.

One real broker (RabbitMQ 3.10, in a network namespace of the RabbitMQ test lab). Figures,
medians over rounds:

- ``amqp_check_ms``: wall time of one :class:`corral.drivers.rabbitmq_health.AmqpCheck` check
  (one AMQP round trip on an open connection); ``amqp_check_cpu_ms``: the checker's CPU per
  check; ``amqp_broker_cpu_ms``: the broker's CPU per check; ``amqp_client_rss_mb``: what
  importing aio-pika and holding the connection adds to the checker's memory;
- baseline ``cli_check_s``: one ``rabbitmq-diagnostics -q check_running`` (what a check by the
  CLI costs), ``cli_check_cpu_s`` its CPU, ``cli_check_rss_mb`` its peak memory.

Usage: bench/rabbit_health.py [--quick] [--json FILE]   (root; make server-packages)
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.rabbit.lab import rabbit_lab

from _cpu import cpu_seconds, rss_mb
from _rabbit import bench_main


def _self_rss_mb() -> float:
    return rss_mb(int(Path("/proc/self").resolve().name))


def _beam_pid(lab_server: object) -> int:
    procs = lab_server.processes()  # type: ignore[attr-defined]
    return int(next(p.pid for p in procs if p.name() == "beam.smp"))


async def _amqp_round(check: object, beam: int, count: int) -> dict[str, float]:
    walls = []
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    broker0 = cpu_seconds(beam)
    for _ in range(count):
        began = time.perf_counter()
        result = await check.check()  # type: ignore[attr-defined]
        walls.append(time.perf_counter() - began)
        assert result.ok, result
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "amqp_check_ms": statistics.median(walls) * 1000,
        "amqp_check_cpu_ms": cpu / count * 1000,
        "amqp_broker_cpu_ms": (cpu_seconds(beam) - broker0) / count * 1000,
    }


async def _cli_round(server: object) -> dict[str, float]:
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    await server.ctl("rabbitmq-diagnostics", "-q", "check_running")  # type: ignore[attr-defined]
    wall = time.perf_counter() - began
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    return {
        "cli_check_s": wall,
        "cli_check_cpu_s": cpu,
        "cli_check_rss_mb": children1.ru_maxrss / 1024,
    }


async def run(quick: bool) -> dict[str, float]:
    rounds, count = (3, 200) if quick else (7, 1000)
    base = Path(tempfile.mkdtemp(prefix="corral-bench-rabbit-"))
    async with rabbit_lab(base) as lab:
        server = lab.servers["a"]
        await server.start()
        before = _self_rss_mb()
        check = lab.check("a")
        for _ in range(120):
            if (await check.check()).ok:
                break
            await asyncio.sleep(0.5)
        samples: dict[str, list[float]] = {"amqp_client_rss_mb": [_self_rss_mb() - before]}
        beam = _beam_pid(server)
        for _ in range(rounds):
            for name, value in (await _amqp_round(check, beam, count)).items():
                samples.setdefault(name, []).append(value)
        for _ in range(max(2, rounds // 2)):
            for name, value in (await _cli_round(server)).items():
                samples.setdefault(name, []).append(value)
        await check.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def _ratio(figures: dict[str, float]) -> list[tuple[str, str]]:
    cli_ms = figures["cli_check_s"] * 1000
    return [("cli / amqp wall ratio", f"{cli_ms / figures['amqp_check_ms']:.0f}x")]


def main() -> int:
    return bench_main(
        __doc__ or "",
        "RabbitMQ health check: kept-open AMQP vs rabbitmq-diagnostics (medians)",
        run,
        _ratio,
    )


if __name__ == "__main__":
    sys.exit(main())
