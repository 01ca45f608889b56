"""The I/O of one alert delivery (the decisions are :mod:`corral.core.alerts`'s).

- :func:`run_alert_agent`: an alert agent (a path or a command line) with the
  ``CRM_alert_*`` environment added to corral's; exit 0 within the timeout is a delivery. At
  the timeout the agent's whole process group is killed (``drivers/_exec.py``), so an agent
  that hangs, or leaves a child behind, holds nothing.
- :func:`post_webhook`: one JSON POST with httpx (already corral's HTTP client: maintained,
  async, with timeouts on connect, read and write); a 2xx answer is a delivery, anything
  else (another status, no answer in time, a refused connection) a failed try.

Each raises :class:`DriverError` with what went wrong, for the delivery log.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

import httpx

from corral.drivers._exec import run_command
from corral.drivers.base import DriverError


async def run_alert_agent(command: str, env: Mapping[str, str], timeout: float) -> None:
    """Run the alert agent; :class:`DriverError` unless it exits 0 within ``timeout``."""
    argv = shlex.split(command)
    if not argv:
        raise DriverError("no alert agent to run")
    done = await run_command(argv, timeout=timeout, env={**os.environ, **env})
    if done.returncode != 0:
        raise DriverError(f"alert agent exited {done.returncode}: {done.summary()}"[:300])


async def post_webhook(
    client: httpx.AsyncClient, url: str, body: Mapping[str, object], timeout: float
) -> None:
    """POST ``body`` as JSON; :class:`DriverError` unless a 2xx answer comes in time."""
    headers = {"Idempotency-Key": str(body.get("id", ""))}
    try:
        answer = await client.post(url, json=dict(body), timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        raise DriverError(f"POST {url}: {type(exc).__name__}: {exc}"[:300]) from exc
    if not 200 <= answer.status_code < 300:
        raise DriverError(f"POST {url}: HTTP {answer.status_code}")
