"""Small asyncio helpers shared by the shells."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05, what: str = ""
) -> float:
    """Poll ``check`` until it returns True; return the seconds it took.

    For conditions owned by another process (a key expiring in etcd, a member restarting) there
    is no event to wait on, so polling is the honest tool; it is always bounded. Raises
    :class:`TimeoutError` naming ``what`` after ``timeout`` seconds.
    """
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what or 'condition'} not reached within {timeout:g}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


async def forever(
    loop: Callable[[], Awaitable[None]], said: Callable[[str], None], pause: float = 0.5
) -> None:
    """Run ``loop``; if it ever ends, fails or is cancelled from inside, tell ``said`` and run
    it again after ``pause`` (an agent never dies of a surprise in one of its loops). Only a
    cancellation of this task itself ends it."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            said(f"{loop.__name__} was cancelled from inside; restarting it")
        except Exception as exc:
            log.exception("%s failed", loop.__name__)
            said(f"{loop.__name__} failed ({exc!r}); restarting it")
        await asyncio.sleep(pause)
