"""Resolving secret references at the moment of use, and keeping the values out of every
message (shell; the reference type is :class:`corral.spec.secrets.SecretRef`).

Contract of :func:`resolve`:

- ``file``: the file is opened and checked through its open descriptor (no window between the
  check and the read): a regular file owned by root (or by the user this process runs as, for
  a lab without root) with no permission for group or others (0600, 0400); anything else is
  refused naming the file, its owner and its mode. One trailing newline is dropped; an empty
  file is an error.
- ``exec``: the command line runs with no shell, stdin from ``/dev/null``, and is killed (its
  whole process group) after the reference's ``timeout``; it must exit 0 and print the secret
  on stdout (one trailing newline dropped). A failure names the secret and the command, with
  the command's stderr (scrubbed of anything it printed on stdout), never a value.
- Errors are :class:`SecretError` (a :class:`DriverError`): a fence whose password cannot be
  had fails like any fence, with the reason.

:func:`redact` is what every shell applies to text that came from a process that saw a
secret (a fence agent that echoes its stdin on an error) before it goes into an error, an
event or a log.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable

from corral.drivers._exec import CommandTimeout, run_command
from corral.drivers.base import DriverError
from corral.spec.secrets import SecretRef, is_secret_name

MAX_SECRET = 64 * 1024  # bytes: a secret, not a file to slurp
MASK = "<redacted>"
_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)(\s*[=:]\s*)(\S+)")


class SecretError(DriverError):
    """A secret could not be had; the message names it and its reference, never a value."""


def _no_newline(text: str) -> str:
    return text.removesuffix("\n").removesuffix("\r")


def read_secret_file(path: str, name: str) -> str:
    """The secret in root-only file ``path`` (see the module contract)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise SecretError(f"secret {name}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"secret {name}: {path} is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise SecretError(
                f"secret {name}: {path} is owned by uid {info.st_uid}, not root; "
                f"chown root:root {path}"
            )
        if mode & 0o077:
            raise SecretError(
                f"secret {name}: {path} has mode {mode:04o}: group or others may read it; "
                f"chmod 600 {path}"
            )
        data = os.read(fd, MAX_SECRET + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET:
        raise SecretError(f"secret {name}: {path} is longer than {MAX_SECRET} bytes")
    value = _no_newline(data.decode(errors="replace"))
    if not value:
        raise SecretError(f"secret {name}: {path} is empty")
    return value


async def run_secret_exec(command: str, name: str, timeout: float) -> str:
    """The secret ``command`` prints on stdout (see the module contract)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise SecretError(f"secret {name}: cannot read the command {command!r}: {exc}") from None
    if not argv:
        raise SecretError(f"secret {name}: empty command")
    try:
        done = await run_command(argv, timeout=timeout, cwd="/")
    except CommandTimeout:
        raise SecretError(
            f"secret {name}: {command!r} did not finish within {timeout:g}s and was killed"
        ) from None
    except DriverError as exc:
        raise SecretError(f"secret {name}: {exc}") from None
    value = _no_newline(done.stdout)
    if done.returncode != 0:
        said = redact(done.stderr, done.stdout.splitlines()).strip().splitlines()
        raise SecretError(
            f"secret {name}: {command!r} exited {done.returncode}"
            + (f": {said[-1].strip()}" if said else "")
        )
    if not value:
        raise SecretError(f"secret {name}: {command!r} printed nothing on stdout")
    return value


async def resolve(ref: SecretRef, name: str, render: Callable[[str], str] = str) -> str:
    """The value ``ref`` points at; ``name`` says which secret it is in messages (``fence
    device power: password``); ``render`` fills templates in the path or command (``{node.name}``
    of a fence's target: one password per BMC)."""
    if ref.file is not None:
        return read_secret_file(render(ref.file), name)
    assert ref.exec is not None
    return await run_secret_exec(render(ref.exec), name, ref.timeout)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value, and the value of every
    ``key=value`` / ``key: value`` whose key is named like a secret, replaced by a mask."""
    for value in sorted({s for s in secrets if s.strip()}, key=len, reverse=True):
        text = text.replace(value, MASK)

    def masked(match: re.Match[str]) -> str:
        key, sep, value = match.groups()
        return f"{key}{sep}{MASK}" if is_secret_name(key) and value != MASK else match.group(0)

    return _KEY_VALUE.sub(masked, text)
