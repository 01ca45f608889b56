"""Fencing through fence agents (shell): the fence-agents stdin protocol.

A fence agent (``fence_ipmilan``, ``fence_virsh``, corral's lab device ``python -m
corral.lab.fence``) reads ``key=value`` lines on stdin, among them ``action=off|on|reboot|status``
and ``plug=<node>``, and exits 0 on success (``status``: 0 = on, 2 = off). Contract of
:func:`fence_node`: it returns only when the agent reported success for the action; any other
outcome (non-zero exit, timeout, the agent missing) raises :class:`DriverError` with the agent's
own words, and a timed-out agent is killed. Parameters are templates (``{node.bmc}``) filled from
the target node's attributes, never from the node running the fence. A parameter that is a
secret reference (``password: {file: ...}``) is resolved by the node running the fence, at the
fence (:mod:`corral.drivers.secrets`); its value goes to the agent's stdin and nowhere else.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import signal
from collections.abc import Mapping

from corral.drivers._group import signal_group
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.secrets import redact, resolve
from corral.spec.model import FenceDevice
from corral.spec.secrets import SecretRef


def agent_command(agent: str) -> list[str]:
    """The command line of a fence agent: a name found on PATH or in /usr/sbin, or a command."""
    words = shlex.split(agent)
    if not words:
        raise DriverError("empty fence agent")
    if len(words) == 1 and "/" not in words[0]:
        found = shutil.which(words[0]) or shutil.which(words[0], path="/usr/sbin:/sbin")
        if found is None:
            raise DriverError(f"fence agent {words[0]!r} is not installed (not on PATH)")
        return [found]
    return words


def stdin_text(
    action: str, target: NodeContext, params: Mapping[str, object], secrets: Mapping[str, str]
) -> str:
    """The agent's stdin: ``action``, ``plug`` (the node name) and the templated parameters;
    ``secrets`` holds the resolved value of each parameter that is a reference (not templated:
    a password may contain braces)."""
    lines = [f"action={action}", f"plug={target.name}"]
    for key, value in params.items():
        if key in secrets:
            text = secrets[key]
        else:
            text = str(value).lower() if isinstance(value, bool) else target.render(str(value))
        if "\n" in text or "\n" in key:
            raise DriverError(f"fence parameter {key!r} contains a newline")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


async def resolve_params(device: FenceDevice, target: NodeContext) -> dict[str, str]:
    """The value of every secret reference among ``device``'s parameters, read now by this
    node (``{node.*}`` in a path or command is the target's: one password per BMC)."""
    return {
        key: await resolve(value, f"fence parameter {key}", target.render)
        for key, value in device.params.items()
        if isinstance(value, SecretRef)
    }


async def fence_node(device: FenceDevice, target: NodeContext, action: str | None = None) -> str:
    """Run ``device`` against ``target``; return the agent's output on success. Its secrets
    are resolved first; they reach the agent's stdin only, and are masked in whatever of the
    agent's output goes into an error or the result."""
    command = agent_command(device.agent)
    secrets = await resolve_params(device, target)
    text = stdin_text(action or device.action, target, device.params, secrets)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise DriverError(f"cannot run fence agent {command[0]}: {exc}") from exc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(text.encode()), device.timeout)
    except TimeoutError:
        raise DriverError(
            f"fence agent {command[0]} did not finish within {device.timeout:g}s"
        ) from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: the agent and all it started
            signal_group(proc.pid, signal.SIGKILL)  # (a late `power off` must not come)
            await proc.wait()
    said = redact(out.decode(errors="replace"), secrets.values()).strip()
    if proc.returncode != 0:
        tail = said.splitlines()[-1] if said else "no output"
        raise DriverError(f"fence agent {command[0]} exited {proc.returncode}: {tail}")
    return said
