"""Driver for ``systemd:`` resources: one unit, driven through ``systemctl``.

Contract (in addition to :mod:`corral.drivers.base`):

- Every call runs ``<systemctl prefix> [--no-ask-password] <verb> <unit>`` as a subprocess.
  The prefix defaults to ``("systemctl",)``; tests pass ``("nsenter", "-t", PID, "-m", "-p",
  "systemctl")`` to reach a systemd booted in a namespace. No D-Bus library is needed.
- **start()** waits for the start job (``systemctl start`` blocks), at most ``start_timeout``
  seconds. A failed job raises DriverError with systemctl's message and the unit's ``Result``
  and main exit status. A job that overruns is cancelled by stopping the unit (best effort),
  then DriverError: a unit is never left half-started. A unit that is ``failed`` right after a
  successful job (``Type=simple`` commands that die at once) also raises.
- **stop()** waits for the stop job up to the spec's ``stop_timeout``; then it SIGKILLs every
  process of the unit (``systemctl kill --signal=SIGKILL``) and waits up to ``kill_timeout``
  for the unit to be inactive. A ``failed`` unit is reset (``reset-failed``) so that a stop
  always ends in ``stopped``. A unit that does not exist is stopped already: success.
- **status()** reads ``systemctl show``: ``active``/``reloading``/``activating`` -> running
  (except ``activating`` in sub-state ``auto-restart``: systemd saw the service die -> failed),
  ``deactivating`` -> running, ``failed`` -> failed (``Result`` and exit status in detail),
  ``inactive`` -> stopped, unknown unit -> stopped. When systemd cannot be asked at all,
  status() raises DriverError: that is not a missing service, and "stopped" would be a guess.
- **adopt()** is True when the unit is running by the rules above.
- systemd units have no promoted role: promote()/demote() raise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from corral.drivers._exec import CommandTimeout, Completed, run_command
from corral.drivers.base import DriverError, DriverStatus
from corral.spec.model import SystemdDriver as SystemdSpec

SHOW_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "ExecMainCode",
    "ExecMainStatus",
)
QUERY_TIMEOUT = 10.0  # for show, kill, reset-failed: answered by PID 1 without waiting for jobs
POLL_INTERVAL = 0.1


def parse_show(text: str) -> dict[str, str]:
    """``Key=Value`` lines of ``systemctl show`` into a dict (values may contain ``=``)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def status_from_show(props: dict[str, str]) -> DriverStatus:
    """Map ``systemctl show`` properties to a DriverStatus (see the module contract)."""
    load, active, sub = (props.get(k, "") for k in ("LoadState", "ActiveState", "SubState"))
    if load == "not-found":
        return DriverStatus("stopped", "unit not found")
    pid = props.get("MainPID", "0")
    main = f", main pid {pid}" if pid not in ("", "0") else ""
    if active == "activating" and sub == "auto-restart":
        return DriverStatus("failed", f"died, systemd restarts it ({_why(props)})")
    if active in ("active", "reloading", "activating", "deactivating"):
        return DriverStatus("running", f"{active} ({sub}){main}")
    if active == "failed":
        return DriverStatus("failed", f"failed ({_why(props)})")
    if active == "inactive":
        return DriverStatus("stopped", f"inactive ({sub})")
    return DriverStatus("failed", f"unexpected state {active or '?'} ({sub or '?'})")


def _why(props: dict[str, str]) -> str:
    """``Result=exit-code, status 3`` style explanation of a unit's last failure."""
    parts = [f"Result={props.get('Result', '?')}"]
    code, status = props.get("ExecMainCode", "0"), props.get("ExecMainStatus", "0")
    if code not in ("", "0"):
        # ExecMainCode is a CLD_* code: 1 exited (status = exit code), 2 killed, 3 dumped.
        what = {"1": "exit status", "2": "killed by signal", "3": "dumped core, signal"}
        parts.append(f"{what.get(code, 'code ' + code)} {status}")
    return ", ".join(parts)


class SystemdUnit:
    """Driver for one systemd unit (see the module docstring for the contract)."""

    def __init__(
        self,
        name: str,
        spec: SystemdSpec,
        *,
        systemctl: Sequence[str] = ("systemctl",),
        start_timeout: float = 120.0,
        kill_timeout: float = 10.0,
    ) -> None:
        if not systemctl:
            raise DriverError(f"{name}: empty systemctl command")
        self.name = name
        self.unit = spec.unit
        self.stop_timeout = spec.stop_timeout
        self.start_timeout = start_timeout
        self.kill_timeout = kill_timeout
        self._systemctl = tuple(systemctl)

    async def _run(self, *args: str, timeout: float) -> Completed:
        return await run_command([*self._systemctl, "--no-ask-password", *args], timeout=timeout)

    async def show(self) -> dict[str, str]:
        """The unit's state properties; DriverError when systemd cannot be asked."""
        props = ",".join(SHOW_PROPERTIES)
        res = await self._run("show", "-p", props, self.unit, timeout=QUERY_TIMEOUT)
        if res.returncode != 0:
            raise DriverError(f"{self.name}: systemctl show {self.unit} failed: {res.summary()}")
        return parse_show(res.stdout)

    async def start(self) -> None:
        try:
            res = await self._run("start", self.unit, timeout=self.start_timeout)
        except CommandTimeout:
            await self._cancel_start()
            raise DriverError(
                f"{self.name}: {self.unit} did not start within {self.start_timeout:g}s; "
                "stopped it again"
            ) from None
        if res.returncode != 0:
            why = await self._failure_detail()
            raise DriverError(
                f"{self.name}: systemd could not start {self.unit}: {res.summary()}{why}"
            )
        props = await self.show()
        if props.get("ActiveState") == "failed":
            raise DriverError(f"{self.name}: {self.unit} failed right after start ({_why(props)})")

    async def stop(self) -> None:
        props = await self.show()
        if props.get("LoadState") == "not-found" and props.get("ActiveState") == "inactive":
            return
        try:
            res = await self._run("stop", self.unit, timeout=self.stop_timeout)
        except CommandTimeout:
            await self._kill_all()
        else:
            if res.returncode != 0:
                raise DriverError(
                    f"{self.name}: systemd could not stop {self.unit}: {res.summary()}"
                )
        if (await self.show()).get("ActiveState") == "failed":
            # A stop ends in "stopped": the agent has already seen (and recorded) the failure.
            await self._run("reset-failed", self.unit, timeout=QUERY_TIMEOUT)

    async def restart(self) -> None:
        """``systemctl restart`` (not part of the Driver protocol): one job, both timeouts."""
        timeout = self.stop_timeout + self.start_timeout
        try:
            res = await self._run("restart", self.unit, timeout=timeout)
        except CommandTimeout as exc:
            raise DriverError(f"{self.name}: restart of {self.unit}: {exc}") from None
        if res.returncode != 0:
            why = await self._failure_detail()
            raise DriverError(
                f"{self.name}: systemd could not restart {self.unit}: {res.summary()}{why}"
            )

    async def status(self) -> DriverStatus:
        return status_from_show(await self.show())

    async def adopt(self) -> bool:
        return (await self.status()).state == "running"

    async def promote(self) -> None:
        raise DriverError(f"{self.name}: a systemd unit has no promoted role")

    async def demote(self) -> None:
        raise DriverError(f"{self.name}: a systemd unit has no promoted role")

    # --- helpers ----------------------------------------------------------------------------

    async def _failure_detail(self) -> str:
        try:
            props = await self.show()
        except DriverError:
            return ""
        if props.get("LoadState") == "not-found":
            return " (unit not found)"
        return f" ({_why(props)})"

    async def _cancel_start(self) -> None:
        """Stop a unit whose start overran; errors are swallowed (the caller raises anyway)."""
        with contextlib.suppress(DriverError):
            await self.stop()

    async def _kill_all(self) -> None:
        """SIGKILL every process of the unit and wait (bounded) until it is inactive."""
        res = await self._run("kill", "--signal=SIGKILL", self.unit, timeout=QUERY_TIMEOUT)
        if res.returncode != 0:
            raise DriverError(f"{self.name}: systemctl kill {self.unit} failed: {res.summary()}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.kill_timeout
        for _ in range(int(self.kill_timeout / POLL_INTERVAL) + 1):
            if (await self.show()).get("ActiveState") not in ("active", "deactivating"):
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        raise DriverError(
            f"{self.name}: {self.unit} still active {self.kill_timeout:g}s after SIGKILL"
        )
