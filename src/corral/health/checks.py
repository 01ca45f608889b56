"""Running one health check (shell). Contract: :func:`run_check` never raises for a failing
target; it returns a :class:`~corral.core.health.CheckOutcome` within the check's timeout
(a hung target is a ``timeout``), and an exec check leaves no process behind (its whole
process group is killed at the timeout).

Nagios plugin semantics for exec: exit 0 OK, 1 WARNING (passes, shown), 2 CRITICAL and
3 UNKNOWN fail; anything else is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import httpx

from corral.core.health import CheckOutcome, CheckStatus
from corral.drivers.base import NodeContext
from corral.spec import HealthCheck

_NAGIOS: dict[int, CheckStatus] = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


async def run_check(check: HealthCheck, node: NodeContext) -> CheckOutcome:
    start = time.monotonic()
    try:
        if check.http is not None:
            status, detail = await _http(check, node)
        elif check.tcp is not None:
            status, detail = await _tcp(node.render(check.tcp), check.timeout)
        else:
            assert check.exec is not None
            status, detail = await _exec(node.render(check.exec), check.timeout)
    except TimeoutError:
        status, detail = "timeout", f"no answer within {check.timeout:g}s"
    return CheckOutcome(status, detail, time.monotonic() - start)


async def _http(check: HealthCheck, node: NodeContext) -> tuple[CheckStatus, str]:
    assert check.http is not None
    url = node.render(check.http.url)
    try:
        response = await asyncio.wait_for(
            _client().request(check.http.method, url, timeout=check.timeout), check.timeout
        )
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.ConnectError:
        return "critical", f"{url}: cannot connect (connection refused or unreachable)"
    except httpx.HTTPError as exc:
        return "critical", f"{url}: {_short(exc)}"
    if response.status_code not in check.http.status:
        return "critical", f"HTTP {response.status_code} from {url}"
    if check.http.body is not None and check.http.body not in response.text:
        return "critical", f"{url}: body lacks {check.http.body!r}"
    return "ok", f"HTTP {response.status_code} from {url}"


async def _tcp(target: str, timeout: float) -> tuple[CheckStatus, str]:
    host, _, port = target.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, ValueError) as exc:
        return "critical", f"tcp {target}: {_short(exc)}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "ok", f"tcp {target} accepts connections"


async def _exec(command: str, timeout: float) -> tuple[CheckStatus, str]:
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the check and anything it started
        await proc.wait()
        raise
    first = out.decode(errors="replace").strip().splitlines()[:1]
    code = proc.returncode if proc.returncode is not None else 3
    return _NAGIOS.get(code, "unknown"), (first[0] if first else f"exit {code}")


_CLIENT: httpx.AsyncClient | None = None


def _client() -> httpx.AsyncClient:
    """One client for every HTTP check of the process: building one loads TLS settings, which
    costs more than the check. No connection is kept between checks, so a hung server cannot
    hold a pooled connection hostage and every check sees a fresh connect."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.AsyncClient(
            follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0)
        )
    return _CLIENT


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return text.splitlines()[0][:160]
