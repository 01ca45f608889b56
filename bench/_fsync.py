#!/usr/bin/env python3
"""An fsync writer: disk load for the soak benchmark (``bench/soak.py``).

Contract: writes ``--block`` bytes (default 4 KiB) at successive offsets of ``FILE`` and
fsyncs after each write, wrapping around at ``--size-mb`` (default 64 MiB: the file never
grows past it), until ``--seconds`` have passed or SIGTERM/SIGINT. Then it removes ``FILE``
and writes its figures as JSON to ``--out`` (or stdout): ``writes``, ``seconds``,
``writes_per_s`` and ``fsync_ms`` (``mean``, ``p50``, ``p99``, ``max``; the percentiles are
the upper bounds of quarter-octave buckets, so they are within 19 % above the true value).

Usage: python bench/_fsync.py FILE [--seconds N] [--size-mb N] [--block N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUCKETS_PER_OCTAVE = 4


def bucket(seconds: float) -> int:
    """The histogram bucket of a latency: quarter octaves of microseconds."""
    return math.ceil(math.log2(max(seconds * 1e6, 1.0)) * BUCKETS_PER_OCTAVE)


def upper_ms(index: int) -> float:
    return round(2 ** (index / BUCKETS_PER_OCTAVE) / 1000, 3)


def percentile_ms(hist: Counter[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (None: no sample)."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= q * total:
            return upper_ms(index)
    return upper_ms(max(hist))


def write_loop(
    path: Path, seconds: float, size: int, block: int, stop: Callable[[], bool] = lambda: False
) -> dict[str, Any]:
    """The loop of the module docstring (``stop``: asked before each write); its figures."""
    data = os.urandom(block)
    slots = max(1, size // block)
    hist: Counter[int] = Counter()
    total = worst = 0.0
    writes = 0
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    start = time.monotonic()
    try:
        while not stop() and time.monotonic() - start < seconds:
            os.pwrite(fd, data, (writes % slots) * block)
            t = time.monotonic()
            os.fsync(fd)
            took = time.monotonic() - t
            hist[bucket(took)] += 1
            total, worst, writes = total + took, max(worst, took), writes + 1
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    elapsed = time.monotonic() - start
    return {
        "writes": writes,
        "seconds": round(elapsed, 1),
        "writes_per_s": round(writes / elapsed, 1) if elapsed else 0.0,
        "fsync_ms": {
            "mean": round(total / writes * 1000, 3) if writes else None,
            "p50": percentile_ms(hist, 0.5),
            "p99": percentile_ms(hist, 0.99),
            "max": round(worst * 1000, 3),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    figures = write_loop(
        args.file, args.seconds, args.size_mb << 20, args.block, stop=lambda: bool(signals)
    )
    text = json.dumps(figures)
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
