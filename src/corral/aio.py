"""Small asyncio helpers shared by the shells."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
