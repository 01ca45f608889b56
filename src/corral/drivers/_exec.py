"""Running a short-lived helper command (``systemctl``, an OCF agent) with a hard time limit.

Contract of :func:`run_command`:

- The command runs in a new session (its own process group), stdin from ``/dev/null``.
- Its stdout and stderr go to anonymous temporary files, not pipes: an OCF agent that starts a
  daemon leaves the daemon holding whatever the agent's stdout was, and a pipe would then
  never reach EOF. We wait for the command's *exit*, never for EOF.
- On timeout (or when the caller is cancelled) the whole process group is killed with SIGKILL
  and reaped (bounded), then :class:`CommandTimeout` is raised (or the cancellation goes on).
  A daemon that the command left in its process group dies with it, on purpose: an action that
  overran its timeout failed, and nothing it started is trusted.
- A command that cannot be executed at all raises :class:`DriverError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from corral.drivers.base import DriverError
from corral.priority import service_argv

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept (the tail)
REAP_TIMEOUT = 5.0  # after SIGKILL, how long to wait for the exit status


class CommandTimeout(DriverError):
    """The command did not exit within its timeout and was killed."""


@dataclass(frozen=True)
class Completed:
    """A finished command: its exit status (negative: killed by that signal) and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def summary(self, lines: int = 3) -> str:
        """The last few non-empty lines of stderr (else stdout), joined for one message."""
        for text in (self.stderr, self.stdout):
            kept = [line.strip() for line in text.splitlines() if line.strip()]
            if kept:
                return " | ".join(kept[-lines:])
        return ""


def _tail(f: IO[bytes], limit: int) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    return f.read().decode(errors="replace")


def _short(argv: Sequence[str], limit: int = 120) -> str:
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        # The leader is not reaped yet, so its pid (= the group id) cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), REAP_TIMEOUT)


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run ``argv`` to completion within ``timeout`` seconds (see the module contract)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = await asyncio.create_subprocess_exec(
                *service_argv(argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise DriverError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            returncode = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await _kill_and_reap(proc)
            raise CommandTimeout(
                f"{_short(argv)} did not finish within {timeout:g}s and was killed"
            ) from None
        except asyncio.CancelledError:
            await _kill_and_reap(proc)
            raise
        stdout, stderr = _tail(out, OUTPUT_LIMIT), _tail(err, OUTPUT_LIMIT)
        return Completed(tuple(argv), returncode, stdout, stderr)
