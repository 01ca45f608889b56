"""Shared helpers for driver tests: bounded waiting and process inspection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable

from corral.drivers._procfs import read_stat


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Wait until ``check()`` is true; AssertionError after ``timeout`` (bounded in count too)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


def alive(pid: int) -> bool:
    """True while ``pid`` runs code (a zombie does not)."""
    stat = read_stat(pid)
    return stat is not None and stat.alive


def kill_quietly(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal one process the test started; a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
