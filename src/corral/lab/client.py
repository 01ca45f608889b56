"""Client load generator for failover benchmarks: HTTP GETs at a fixed rate, one record each.

Run inside the client namespace of a lab::

    ip netns exec NS python -m corral.lab.client URL [URL ...] --interval 0.01 --timeout 0.1 \\
        --duration 30 --out run.json --ready started

Contract:
- Open loop: request ``k`` is due at ``t0 + k * interval`` whatever earlier requests do (each one
  runs in its own task, so a hanging request never lowers the rate; at most
  ``timeout / interval + 1`` are in flight). With several URLs every URL gets one request per
  tick (``--cycle``: one request per tick, URLs in turn, as a DNS round-robin client would).
- Hard bounds: no request is sent at or after ``t0 + duration`` (so at most
  ``ceil(duration / interval)`` ticks), and each request ends within ``timeout`` (connect, send
  and read together), so the run ends by ``t0 + duration + timeout`` plus scheduling noise. A
  tick that comes late (a stalled client) is sent late rather than dropped; its record holds
  the true send time. SIGTERM/SIGINT stop sending early; in-flight requests still finish and
  everything is written.
- Times are ``time.monotonic()`` (CLOCK_MONOTONIC is one clock for every network namespace of
  the machine), so a bench can line records up with the moment it injected a fault.
- A new TCP connection per request, HTTP/1.0 (the stand-in app and HAProxy close after the
  answer): a VIP move or a dead backend is seen by the next request, never hidden by a pooled
  connection. ``ok`` means a complete 2xx answer.

Why raw asyncio streams and not httpx: measured on this 2-core machine against the stand-in app
at 200 req/s, httpx's AsyncClient costs about 2.1 ms of CPU per request (42 % of a core) and
0.3 s of import, the raw request about 0.55 ms (11 %): the client must not steal the CPU the
cluster under test needs, nor start late.

``summarize`` (pure) turns records and the fault time into the figures the benchmarks report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import itertools
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_RESPONSE = 64 * 1024  # the stand-in answers a few bytes; a runaway server cannot fill memory
BODY_KEEP = 200


@dataclass(frozen=True)
class Target:
    """A parsed ``http://host:port/path`` URL."""

    url: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """ValueError for anything but ``http://`` with a host."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url}: only http://HOST[:PORT][/PATH] URLs are supported")
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        return cls(url, parts.hostname, parts.port or 80, path)

    def request(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"GET {self.path} HTTP/1.0\r\nHost: {host}:{self.port}\r\n\r\n".encode()


@dataclass(frozen=True)
class Record:
    """One request. ``sent``: monotonic time the connect started; ``latency``: seconds until the
    answer or the error (the timeout for a timeout); ``error``: None when ``ok``, else one of
    ``connect_timeout``, ``read_timeout``, ``refused``, ``reset``, ``unreachable``, ``closed``
    (connection closed before a status line), ``http`` (non-2xx, see ``status``),
    ``bad_response``, or ``os:<errno name>``; ``body``: the answer's body, stripped, first 200
    characters (the stand-in app names the node that served)."""

    seq: int
    url: str
    sent: float
    latency: float
    ok: bool
    status: int | None = None
    error: str | None = None
    body: str = ""
    source: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# --- pure parts ----------------------------------------------------------------------------


def parse_response(data: bytes) -> tuple[int, str]:
    """``(status, body)`` of a complete HTTP/1.x answer; ValueError when there is no status
    line (an empty ``data`` included)."""
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise ValueError("no HTTP status line")
    return int(words[1]), body.decode(errors="replace").strip()[:BODY_KEEP]


def error_kind(exc: BaseException, phase: str) -> str:
    """The error kind of ``exc`` raised while in ``phase`` (``connect`` or ``read``)."""
    if isinstance(exc, TimeoutError):
        return f"{phase}_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"os:{errno.errorcode.get(exc.errno, exc.errno)}"
    return f"os:{type(exc).__name__}"


def planned_ticks(duration: float, interval: float) -> int:
    """How many ticks fit in ``[0, duration)``: the count bound of a run."""
    return max(1, math.ceil(duration / interval - 1e-9))


def summarize(
    records: Iterable[Record], fault_time: float, *, url: str | None = None
) -> dict[str, Any]:
    """The failover figures of a run, times in seconds after ``fault_time`` (monotonic).

    Only requests to ``url`` count when it is given (give it: with several URLs, a success on
    one VIP would otherwise fill another's gap). Send times decide order and membership: a
    request is "after the fault" when it was sent at or after ``fault_time``.

    - ``first_failure_s``: the first failed request after the fault;
    - ``first_success_s``: the first success sent after that failure (the service is back for
      some requests); ``all_ok_s``: the first success sent after the *last* failure (from then
      on every request succeeded); ``last_failure_s``. With no failure after the fault, both
      are 0.0 (no outage seen); with failures and no later success, None (not recovered
      within the run);
    - ``failed_after_fault``; ``tail_failed``: failures sent after ``first_success_s`` (the
      requests that a load balancer still sent to a dead backend); ``failed_before_fault``;
    - ``longest_gap_s``: the longest time without a successful answer (answer time = send +
      latency), counted from the fault to the first answer, between answers, and from the last
      answer to the last request sent (so a run that never recovers shows it);
    - ``errors``: failures after the fault by kind; ``served_by``: successful bodies after the
      fault, counted.
    """
    rs = sorted((r for r in records if url is None or r.url == url), key=lambda r: r.sent)
    after = [r for r in rs if r.sent >= fault_time]
    failures = [r for r in after if not r.ok]
    first_fail, last_fail = (failures[0].sent, failures[-1].sent) if failures else (None, None)
    first_success = _back_after(after, first_fail, fault_time)
    tail = 0
    if failures and first_success is not None:
        tail = sum(1 for r in failures if r.sent > fault_time + first_success)
    return {
        "requests": len(rs),
        "requests_after_fault": len(after),
        "failed": sum(1 for r in rs if not r.ok),
        "failed_before_fault": sum(1 for r in rs if not r.ok and r.sent < fault_time),
        "failed_after_fault": len(failures),
        "tail_failed": tail,
        "first_failure_s": _rel(first_fail, fault_time),
        "first_success_s": first_success,
        "all_ok_s": _back_after(after, last_fail, fault_time),
        "last_failure_s": _rel(last_fail, fault_time),
        "longest_gap_s": _longest_gap(after, fault_time),
        "errors": dict(Counter(r.error or "?" for r in failures)),
        "served_by": dict(Counter(r.body for r in after if r.ok)),
    }


def _rel(t: float | None, fault_time: float) -> float | None:
    return None if t is None else round(t - fault_time, 6)


def _back_after(after: Sequence[Record], failed: float | None, fault_time: float) -> float | None:
    """Seconds after the fault of the first success sent after the failure at ``failed``:
    0.0 when nothing failed, None when nothing succeeded after it."""
    if failed is None:
        return 0.0
    return _rel(next((r.sent for r in after if r.ok and r.sent > failed), None), fault_time)


def _longest_gap(after: Sequence[Record], fault_time: float) -> float | None:
    if not after:
        return None
    answers = sorted(r.sent + r.latency for r in after if r.ok)
    end = max(after[-1].sent, answers[-1] if answers else fault_time)
    points = [fault_time, *answers, end]
    return round(max(b - a for a, b in itertools.pairwise(points)), 6)


# --- I/O -----------------------------------------------------------------------------------


async def fetch(target: Target, timeout: float, seq: int, source: str | None = None) -> Record:
    """One GET on a new connection, bounded by ``timeout`` in total; never raises (but for
    cancellation): every outcome is a Record."""
    sent = time.monotonic()
    deadline = sent + timeout
    phase = "connect"
    writer: asyncio.StreamWriter | None = None

    def record(ok: bool, **kw: Any) -> Record:
        latency = time.monotonic() - sent
        return Record(seq, target.url, sent, round(latency, 6), ok, source=source, **kw)

    try:
        local = (source, 0) if source else None
        reader, stream = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, local_addr=local), timeout
        )
        writer = stream
        phase = "read"
        stream.write(target.request())
        data = await asyncio.wait_for(reader.read(MAX_RESPONSE), deadline - time.monotonic())
        while data and len(data) < MAX_RESPONSE:  # HTTP/1.0: the answer ends at EOF
            more = await asyncio.wait_for(reader.read(MAX_RESPONSE), deadline - time.monotonic())
            if not more:
                break
            data += more
    except (TimeoutError, OSError) as exc:
        return record(False, error=error_kind(exc, phase))
    finally:
        if writer is not None:
            writer.close()
    if not data:
        return record(False, error="closed")
    try:
        status, body = parse_response(data)
    except ValueError:
        return record(False, error="bad_response")
    ok = 200 <= status < 300
    return record(ok, status=status, error=None if ok else "http", body=body)


@dataclass(frozen=True)
class Plan:
    """What a run does (see the module docstring)."""

    targets: tuple[Target, ...]
    interval: float
    timeout: float
    duration: float
    cycle: bool = False
    sources: tuple[str, ...] = ()


async def run(plan: Plan, ready: Path | None = None) -> tuple[list[Record], dict[str, Any]]:
    """Send the plan's requests; return the records (by ``seq``) and the run's metadata."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Record]] = []
    t0 = time.monotonic()
    end = t0 + plan.duration
    ticks = planned_ticks(plan.duration, plan.interval)
    seq = 0
    for k in range(ticks):
        due = t0 + k * plan.interval
        if due >= end:
            break
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set() or time.monotonic() >= end:
            break
        targets = [plan.targets[k % len(plan.targets)]] if plan.cycle else plan.targets
        for target in targets:
            source = plan.sources[seq % len(plan.sources)] if plan.sources else None
            tasks.append(asyncio.create_task(fetch(target, plan.timeout, seq, source)))
            seq += 1
        if k == 0 and ready is not None:
            await asyncio.sleep(0)  # let the first connect() go out before saying so
            await asyncio.to_thread(ready.touch)
    records = sorted(await asyncio.gather(*tasks), key=lambda r: r.seq)
    meta = {
        "started": t0,
        "ended": time.monotonic(),
        "interval": plan.interval,
        "timeout": plan.timeout,
        "duration": plan.duration,
        "urls": [t.url for t in plan.targets],
        "cycle": plan.cycle,
        "sources": list(plan.sources),
        "planned": ticks * (1 if plan.cycle else len(plan.targets)),
        "sent": len(records),
        "stopped_early": stop.is_set(),
    }
    return records, meta


def write(path: Path | None, records: Sequence[Record], meta: dict[str, Any], lines: bool) -> None:
    """One JSON document ``{"meta": ..., "records": [...]}``, or JSON lines (meta first, as
    ``{"meta": ...}``) when ``lines``; ``path`` None or ``-``: stdout. A regular file is
    replaced atomically; anything else that exists (``/dev/null``, a FIFO) is written to."""
    if lines:
        text = "\n".join([json.dumps({"meta": meta}), *(json.dumps(asdict(r)) for r in records)])
    else:
        text = json.dumps({"meta": meta, "records": [asdict(r) for r in records]})
    if path is None or str(path) == "-":
        sys.stdout.write(text + "\n")
    elif path.exists() and not path.is_file():  # /dev/null, a FIFO: never replace those
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)  # a reader never sees half a file


def load(path: Path) -> tuple[list[Record], dict[str, Any]]:
    """Read what ``write`` wrote (either format)."""
    text = path.read_text()
    with contextlib.suppress(ValueError):
        doc = json.loads(text)
        if isinstance(doc, dict) and "records" in doc:
            return [Record.from_json(r) for r in doc["records"]], doc.get("meta", {})
    meta: dict[str, Any] = {}
    records = []
    for line in text.splitlines():
        if line.strip():
            item = json.loads(line)
            if "meta" in item:
                meta = item["meta"]
            else:
                records.append(Record.from_json(item))
    return records, meta


def parse_args(argv: Sequence[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="python -m corral.lab.client", description=__doc__.split("\n")[0]
    )
    p.add_argument("urls", nargs="+", metavar="URL")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--interval", type=float, help="seconds between ticks (default 0.01)")
    rate.add_argument("--rate", type=float, help="ticks per second (1 / interval)")
    p.add_argument("--timeout", type=float, default=0.1, help="per request, seconds (0.1)")
    p.add_argument("--duration", type=float, required=True, help="seconds of sending")
    p.add_argument("--cycle", action="store_true", help="one URL per tick, in turn")
    p.add_argument("--source", action="append", default=[], help="local address, repeatable")
    p.add_argument("--out", type=Path, help="write here (default: JSON lines on stdout)")
    p.add_argument("--jsonl", action="store_true", help="JSON lines into --out as well")
    p.add_argument("--ready", type=Path, help="touched once the first request went out")
    args = p.parse_args(argv)
    if args.rate is not None:
        interval = 1 / args.rate if args.rate > 0 else 0.0
    else:
        interval = 0.01 if args.interval is None else args.interval
    if interval <= 0 or args.timeout <= 0 or args.duration <= 0:
        p.error("--interval/--rate, --timeout and --duration must be positive")
    try:
        targets = tuple(Target.parse(u) for u in args.urls)
    except ValueError as exc:
        p.error(str(exc))
    plan = Plan(targets, interval, args.timeout, args.duration, args.cycle, tuple(args.source))
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    records, meta = asyncio.run(run(plan, args.ready))
    write(args.out, records, meta, lines=args.jsonl or args.out is None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
