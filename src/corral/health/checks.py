"""Running one health check (shell): http, tcp, exec with Nagios plugin semantics.

Contract of :meth:`Checker.run` (and of the module-level :func:`run_check`):

- It never raises for a failing or misbehaving target; it returns a
  :class:`~corral.core.health.CheckOutcome` within the check's ``timeout`` (plus scheduling
  noise). Only programming errors raise. Cancelling it is safe and leaves nothing behind.
- A target that does not answer in time is ``timeout`` ("timed out after 0.5s: ..."): a hung
  service (SIGSTOP, a deadlock) fails like a dead one.
- ``http``: healthy when the status is one of ``status`` and, when ``body`` is given, the body
  (first :data:`BODY_LIMIT` bytes) contains it. Redirects are not followed (list 3xx statuses to
  accept them), proxies from the environment are ignored (a check goes to the node itself), and
  TLS certificates are not verified (like Nagios' ``check_http`` and HAProxy's ``check-ssl``
  without ``verify``: the check tests function, and nodes are addressed by IP).
- ``tcp``: healthy when ``host:port`` accepts a connection (``[v6]:port`` works too).
- ``exec``: ``/bin/sh -c COMMAND`` in its own session; exit 0 OK, 1 WARNING (passes), 2
  CRITICAL, 3 UNKNOWN, anything else (a signal, 127 for a missing command) UNKNOWN. The detail
  is the first line of stdout without Nagios performance data (else of stderr). The check's
  whole process group is killed at the timeout, on cancellation, and after it exits (so a
  check cannot leave background children behind).
- A template naming an attribute the node lacks (``{node.bmc}``) is ``unknown``, not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.health import CheckOutcome, CheckStatus
from corral.core.node import NodeContext
from corral.health import plainhttp
from corral.spec import HealthCheck
from corral.spec.model import HttpCheck

if TYPE_CHECKING:
    import httpx

NAGIOS_STATUS: dict[int, CheckStatus] = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}
BODY_LIMIT = 1 << 20  # bytes of an HTTP body searched for ``body``: a check is not a download
OUTPUT_LIMIT = 1 << 16  # bytes of exec output kept; the rest is read and dropped
_REAP_WAIT = 0.5  # seconds to wait for a SIGKILLed check to die before giving up on it

Result = tuple[CheckStatus, str]


class Checker:
    """Runs checks; holds one HTTP client for all of them (building a client costs more than
    a check). No HTTP connection is kept between checks, so a hung server cannot hold a pooled
    connection hostage, the pool cannot run dry, and every check sees a fresh connect.

    Use one per event loop; :meth:`aclose` (or ``async with``) releases the client.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or MonotonicClock()
        self._client: httpx.AsyncClient | None = None  # built at the first HTTP check

    async def __aenter__(self) -> Checker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client; the checker may still be used (it builds a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, check: HealthCheck, node: NodeContext) -> CheckOutcome:
        return await self.run(check, node)

    async def run(self, check: HealthCheck, node: NodeContext) -> CheckOutcome:
        """Run ``check`` once against ``node`` (see the module docstring for the contract)."""
        start = self._clock.now()
        target = _template(check)
        rendered = node.render(target)
        status: CheckStatus
        if "{node." in rendered:
            status, detail = "unknown", f"node {node.name} lacks an attribute named in {target!r}"
        else:
            status, detail = await self._bounded(check, rendered)
        return CheckOutcome(status, detail, max(0.0, self._clock.now() - start))

    async def _bounded(self, check: HealthCheck, target: str) -> Result:
        try:
            async with asyncio.timeout(check.timeout):
                if check.http is not None:
                    return await self._http(check.http, target, check.timeout)
                if check.tcp is not None:
                    return await _tcp(target)
                return await _exec(target)
        except TimeoutError:
            return "timeout", f"timed out after {check.timeout:g}s: {_clip(target, 160)}"

    async def _http(self, spec: HttpCheck, url: str, timeout: float) -> Result:
        if spec.body is not None and spec.method == "HEAD":
            return "unknown", f"{url}: a body check needs GET or POST, not HEAD"
        if url.startswith("http://"):
            return await _plain_http(spec, url)
        import httpx  # https only: 20 MB an agent without such checks never loads

        try:
            return await self._https(spec, url, timeout)
        except httpx.TimeoutException:
            raise TimeoutError from None

    async def _https(self, spec: HttpCheck, url: str, timeout: float) -> Result:
        import httpx

        client = self._http_client()
        try:
            request = client.build_request(
                spec.method, url, timeout=timeout, headers={"Connection": "close"}
            )
            response = await client.send(request, stream=True)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return "unknown", f"{url}: {exc}"
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            return "critical", f"{url}: {_reason(exc)}"
        try:
            got = f"HTTP {response.status_code} from {url}"
            if response.status_code not in spec.status:
                return "critical", f"{got} (expected {_statuses(spec.status)})"
            if spec.body is None:
                return "ok", got
            body = await _read_head(response, BODY_LIMIT)
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            return "critical", f"{url}: {_reason(exc)} while reading the body"
        finally:
            await response.aclose()
        if spec.body not in _decode(body, response.encoding):
            return "critical", f"{got} but its body lacks {spec.body!r}"
        return "ok", f"{got} containing {spec.body!r}"

    def _http_client(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,  # HTTP(S)_PROXY must not redirect a check to a proxy
                verify=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            )
        return self._client


def _decode(body: bytes, encoding: str | None) -> str:
    try:
        return body.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset the server made up
        return body.decode("utf-8", errors="replace")


def _template(check: HealthCheck) -> str:
    if check.http is not None:
        return check.http.url
    if check.tcp is not None:
        return check.tcp
    if check.exec is not None:
        return check.exec
    raise ValueError("a health check needs one of http, tcp, exec")  # the model forbids this


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _statuses(codes: list[int]) -> str:
    return " or ".join(str(c) for c in codes)


async def _plain_http(spec: HttpCheck, url: str) -> Result:
    """An ``http://`` check through :mod:`corral.health.plainhttp` (no httpx)."""
    try:
        answer = await plainhttp.fetch(spec.method, url, BODY_LIMIT, want_body=bool(spec.body))
    except plainhttp.BadUrl as exc:
        return "unknown", str(exc)
    except plainhttp.HttpCheckError as exc:
        return "critical", f"{url}: {exc}"
    got = f"HTTP {answer.status} from {url}"
    if answer.status not in spec.status:
        return "critical", f"{got} (expected {_statuses(spec.status)})"
    if spec.body is None:
        return "ok", got
    if spec.body not in _decode(answer.body, answer.charset):
        return "critical", f"{got} but its body lacks {spec.body!r}"
    return "ok", f"{got} containing {spec.body!r}"


async def _read_head(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body; stops reading there."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


async def _tcp(target: str) -> Result:
    host, _, port_text = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return "unknown", f"tcp {target}: not host:port"
    try:
        _, writer = await asyncio.open_connection(host, int(port_text))
    except OSError as exc:
        return "critical", f"tcp {target}: {_reason(exc)}"
    except ValueError as exc:  # a host name that cannot be encoded (IDNA)
        return "unknown", f"tcp {target}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "ok", f"tcp {target} accepts connections"


async def _exec(command: str) -> Result:
    try:
        proc = await _spawn(command)
    except (OSError, ValueError) as exc:  # out of processes, or a NUL in the command
        return "unknown", f"cannot run the check: {_reason(exc)}"
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = await asyncio.gather(
            _drain(proc.stdout, OUTPUT_LIMIT), _drain(proc.stderr, OUTPUT_LIMIT)
        )
        code = await proc.wait()
    finally:
        # At the timeout or on cancellation this stops the check; after a normal exit it stops
        # background children. The pgid cannot be recycled while any member lives, and once
        # none does the kill finds nothing (ESRCH).
        _kill_group(proc.pid)
        if proc.returncode is None:
            await _reap(proc)
    return NAGIOS_STATUS.get(code, "unknown"), _exec_detail(code, out, err)


async def _spawn(command: str) -> asyncio.subprocess.Process:
    """Start ``/bin/sh -c command`` as the leader of a new session.

    Cancelled midway (a timeout, a stop), asyncio would kill the shell alone and then wait
    for its pipes to close, which children holding them can delay indefinitely. So the
    creation is shielded, and whatever it starts is killed as a group once it exists."""
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # pgid == pid: the whole check can be killed at once
        )
    )
    try:
        return await asyncio.shield(spawn)
    except asyncio.CancelledError:
        spawn.add_done_callback(_kill_spawned)
        raise


def _kill_spawned(spawn: asyncio.Future[asyncio.subprocess.Process]) -> None:
    if not spawn.cancelled() and spawn.exception() is None:
        _kill_group(spawn.result().pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait (briefly) for a killed check to die, so its transport closes with it. Bounded: a
    process stuck in the kernel (D state) must not hold the check past its timeout."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), _REAP_WAIT)


async def _drain(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read ``stream`` to its end, keeping the first ``limit`` bytes (a chatty check must not
    block on a full pipe, nor fill memory)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


def _exec_detail(code: int, out: bytes, err: bytes) -> str:
    for raw in (out, err):
        lines = raw.decode(errors="replace").strip().splitlines()
        if lines:
            first = lines[0].split("|", 1)[0].strip()  # "|..." is Nagios performance data
            if first:
                return first[:300]
    if code < 0:
        return f"killed by signal {_signal_name(-code)}"
    return f"exit {code}, no output"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _reason(exc: BaseException) -> str:
    """A short reason for a connection failure: ``connection refused`` rather than a chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0][:200]


_DEFAULT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Checker] = (
    weakref.WeakKeyDictionary()
)


async def run_check(check: HealthCheck, node: NodeContext) -> CheckOutcome:
    """Run ``check`` once with this event loop's shared :class:`Checker` (never closed: it
    keeps no connection open, so there is nothing to leak)."""
    loop = asyncio.get_running_loop()
    checker = _DEFAULT.get(loop)
    if checker is None:
        checker = _DEFAULT[loop] = Checker()
    return await checker.run(check, node)
