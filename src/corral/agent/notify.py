"""What the agent tells systemd (shell; the protocol is :mod:`corral.sdnotify`).

- ``READY=1`` once the node is registered in the store (``Type=notify``: ``systemctl start``
  and the units ordered after corral wait for that, not for the process to exist).
- ``WATCHDOG=1`` every quarter of ``WatchdogSec``, from a task of the agent's event loop: the
  loop that runs every control loop of the agent (lease renewals, the store watch, the main
  loop, gossip). A loop blocked in a synchronous call, a spin or a deadlock stops every one of
  them and this task with them, and systemd restarts the agent (the lease guard keeps rule 1
  meanwhile; ``docs/safety-rules.md``, "Running under systemd"). A single coroutine waiting
  long is not a hang: every store call and driver operation has its own timeout.
- ``STATUS=`` the node's state in one line, when it changes (``systemctl status corral``).
- ``STOPPING=1`` when the agent is asked to stop (:func:`stopping`).

Nothing is sent when not under systemd (no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
from typing import TYPE_CHECKING

from corral.journal import log_to_journal_if_stderr_is
from corral.sdnotify import Notifier
from corral.spec import Spec

__all__ = ["Notifier", "journal_fields", "notify_loop", "stop_agent", "stopping", "systemd_notify"]

if TYPE_CHECKING:
    from corral.agent.node import Agent

IDLE_PERIOD = 5.0  # seconds between status checks without a watchdog
READY_POLL = 0.2  # seconds between looks at the registration until READY=1 is sent


def status_line(agent: Agent) -> str:
    """The node's state as ``systemctl status`` shows it."""
    if agent.registration is None:
        return f"node {agent.node}: not registered (waiting for the store)"
    role = "controller" if agent.controller.active else "member"
    services = len(agent.services)
    lease = f"lease {agent.lease:x}" if agent.lease is not None else "no lease"
    return f"node {agent.node}: registered, {lease}, {role}, {services} service(s) here"


async def notify_loop(agent: Agent, notifier: Notifier) -> None:
    """Run until cancelled (beside the agent, on its event loop)."""
    period = notifier.watchdog / 4 if notifier.watchdog else IDLE_PERIOD
    ready, shown = False, ""
    while True:
        lines = ["WATCHDOG=1"] if notifier.watchdog else []
        if not ready and agent.registration is not None:
            ready = True
            lines.append("READY=1")
        status = status_line(agent)
        if status != shown:
            shown = status
            lines.append(f"STATUS={status}")
        if lines:
            notifier.send(*lines)
        await asyncio.sleep(min(period, READY_POLL) if not ready else period)


def stopping(notifier: Notifier | None) -> None:
    if notifier is not None:
        notifier.send("STOPPING=1", "STATUS=stopping (services keep running)")


def systemd_notify(agent: Agent, notifier: Notifier | None) -> list[asyncio.Task[None]]:
    """The task of :func:`notify_loop` (none when not under systemd). With a watchdog, a
    watchdog kill (systemd's SIGABRT) first writes every thread's stack to stderr (the
    journal): where the agent hung."""
    if notifier is not None and notifier.watchdog:
        faulthandler.enable(all_threads=True)
    return [] if notifier is None else [asyncio.create_task(notify_loop(agent, notifier))]


def stop_agent(task: asyncio.Task[None], notifier: Notifier | None) -> None:
    """The signal handler of ``corral agent``: ``STOPPING=1``, then stop the agent."""
    stopping(notifier)
    task.cancel()


def journal_fields(spec: Spec, node: str, verbose: bool) -> None:
    """Under systemd, log to journald with the node and cluster as fields (corral.journal)."""
    fields = {"CORRAL_NODE": node, "CORRAL_CLUSTER": spec.cluster}
    log_to_journal_if_stderr_is(fields, logging.DEBUG if verbose else logging.INFO)
