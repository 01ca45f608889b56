"""Alerts (pure): which events are alerts, which sinks want them, what an alert agent's
environment and a webhook's body say, and when a failed delivery is tried again.

Events already are changes (rule 5): an agent writes one when a health verdict *changes*,
when it starts, stops or fails an operation, the controller when it fences; a monitor that
keeps passing writes nothing, so it never alerts. :func:`classify` maps an event to one of
Pacemaker's alert kinds, or to None (placement notes, audits, spec changes are not alerts):

=============== ========== ===================================================================
event kind      alert kind what it carries
=============== ========== ===================================================================
``fence``       fencing    node = the fenced node (the event's ``target``), task = the action
                           (``reboot``/``off``, from the text), rc 0 when it was fenced, else 1
``lease``       node       the writing node lost its lease: desc ``lost``
``node``        node       node = the event's ``target``, desc = the text's first word
                           (``member``/``lost``: the controller's node events)
``start``       resource   task ``start``, rc 0; ``stop``: task ``stop``, rc 0;
``promoted``    resource   task ``promote``, rc 0
``failed``      resource   the operation named in the text (start, stop, ...), rc 1, status 4
``health``      resource   task ``monitor``: rc 0 (``ok``) when the verdict is ``healthy``, else
                           7 (``not running``)
``alert-test``  node       ``corral alerts test SINK``: to that sink only, past its filters
=============== ========== ===================================================================

Severity (a sink's least): a failure (rc != 0) or a lost node is ``critical``; a fence that
worked and a stop are ``warning``; the rest ``info``.

Delivery: every (sink, event) is a duty in the store owned by one agent (safety rule 6,
``docs/safety-rules.md``, "Alerts"). :func:`after_try` is its state machine: delivered, tried
again at ``now + backoff(n)``, or given up after the sink's tries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from corral.spec.alerts import SEVERITIES, AlertKind, AlertSink, Severity

TEST_KIND = "alert-test"  # the event kind of `corral alerts test SINK` (resource = the sink)
# Pacemaker's numbers: OCF return codes (rc) and execution status (status)
RC_OK, RC_ERROR, RC_NOT_RUNNING = 0, 1, 7
STATUS_DONE, STATUS_ERROR = 0, 4
_DESC = {RC_OK: "ok", RC_ERROR: "error", RC_NOT_RUNNING: "not running"}
_FENCE_ACTION = re.compile(r"\((reboot|off|on)\b")
_FAILED_OP = re.compile(r"\b(start|stop|restart|promote|demote|monitor)\b")


@dataclass(frozen=True)
class Facts:
    """What an event record says (``corral.records.Event``), as the core reads it."""

    kind: str
    node: str  # the node that wrote it
    resource: str
    reason: str
    time: float  # wall-clock seconds
    target: str = ""  # the node it is about, when not the writer (a fence)


@dataclass(frozen=True)
class Alert:
    """One alert, in Pacemaker's terms (see the module docstring's table)."""

    kind: AlertKind
    node: str
    desc: str
    severity: Severity
    time: float
    event_kind: str
    resource: str = ""
    task: str = ""
    rc: int = RC_OK
    status: int = STATUS_DONE
    target_rc: int = RC_OK
    test_sink: str = ""  # an alert-test: the one sink it is for


def classify(facts: Facts) -> Alert | None:
    """The alert an event is, or None when it is not one (see the module docstring)."""
    kind = facts.kind
    if kind == TEST_KIND:
        return Alert("node", facts.node, "test", "info", facts.time, kind, test_sink=facts.resource)
    if kind == "fence":
        ok = " fenced by " in facts.reason
        action = _FENCE_ACTION.search(facts.reason)
        rc = RC_OK if ok else RC_ERROR
        sev: Severity = "warning" if ok else "critical"
        task = action.group(1) if action else "reboot"
        target = facts.target or facts.node
        return Alert("fencing", target, facts.reason, sev, facts.time, kind, task=task, rc=rc)
    if kind in ("lease", "node"):
        desc = "lost" if kind == "lease" else facts.reason.split(":", 1)[0]
        sev = "critical" if desc == "lost" else "info"
        return Alert("node", facts.target or facts.node, desc, sev, facts.time, kind)
    return _resource_alert(facts)


def _resource_alert(facts: Facts) -> Alert | None:
    if not facts.resource:
        return None
    rc, status = RC_OK, STATUS_DONE
    sev: Severity = "info"
    if facts.kind in ("start", "stop", "promoted"):
        task = {"promoted": "promote"}.get(facts.kind, facts.kind)
        sev = "warning" if task == "stop" else "info"
    elif facts.kind == "failed":
        found = _FAILED_OP.search(facts.reason)
        task, rc, status, sev = (
            (found.group(1) if found else "start"),
            RC_ERROR,
            STATUS_ERROR,
            "critical",
        )
    elif facts.kind == "health":
        task = "monitor"
        if not facts.reason.split(":")[0].endswith(" is healthy"):
            rc, sev = RC_NOT_RUNNING, "critical"
    else:
        return None
    desc = _DESC[rc]
    return Alert(
        "resource", facts.node, desc, sev, facts.time, facts.kind, facts.resource, task, rc, status
    )


def wants(name: str, sink: AlertSink, alert: Alert) -> bool:
    """Whether sink ``name`` takes ``alert``: a test only its own sink, past the filters; else
    every filter holds (kind, resource, node, least severity)."""
    if alert.event_kind == TEST_KIND:
        return alert.test_sink == name
    return (
        alert.kind in sink.kinds
        and (not sink.resources or alert.resource in sink.resources)
        and (not sink.nodes or alert.node in sink.nodes)
        and SEVERITIES.index(alert.severity) >= SEVERITIES.index(sink.severity)
    )


def dedup_id(cluster: str, sink: str, event_id: str) -> str:
    """The same id for every try of one event to one sink, from any agent."""
    return f"{cluster}/{sink}/{event_id}"


def crm_env(
    alert: Alert,
    recipient: str,
    sequence: int,
    node_ids: Mapping[str, int],
    version: str,
    exec_time: float,
) -> dict[str, str]:
    """Pacemaker's alert-agent environment for ``alert``, each variable under both prefixes
    (``CRM_alert_`` and the older ``CRM_notify_``). The timestamp is the event's (UTC, the
    default ``%H:%M:%S.%06N`` form), not the run's: a delayed run still says when it
    happened. ``exec_time``: the epoch seconds of this run (Pacemaker: when the operation
    ran; here, when the agent is started)."""
    seconds = int(alert.time)
    usec = round((alert.time - seconds) * 1e6) % 1_000_000
    day = seconds % 86400  # UTC: no time zone database in a core
    clock = f"{day // 3600:02d}:{day % 3600 // 60:02d}:{day % 60:02d}"
    values = {
        "kind": alert.kind,
        "version": version,
        "recipient": recipient,
        "node_sequence": str(sequence),
        "timestamp": f"{clock}.{usec:06d}",
        "timestamp_epoch": str(seconds),
        "timestamp_usec": str(usec),
        "node": alert.node,
        "desc": alert.desc,
    }
    if alert.kind == "node":
        values["nodeid"] = str(node_ids.get(alert.node, 0))
    if alert.kind in ("fencing", "resource"):
        values |= {"task": alert.task, "rc": str(alert.rc)}
    if alert.kind == "resource":
        values |= {
            "rsc": alert.resource,
            "interval": "0",  # corral's checks are not Pacemaker operations with an interval
            "target_rc": str(alert.target_rc),
            "status": str(alert.status),
            "exec_time": str(int(exec_time)),
        }
    env = {f"CRM_alert_{k}": v for k, v in values.items()}
    return env | {f"CRM_notify_{k}": v for k, v in values.items()}


def webhook_body(
    cluster: str, sink: str, event_id: str, alert: Alert, reason: str
) -> dict[str, object]:
    """The JSON a webhook receives (the README's "Alerts" documents it)."""
    return {
        "id": dedup_id(cluster, sink, event_id),
        "cluster": cluster,
        "sink": sink,
        "event": event_id,
        "kind": alert.kind,
        "event_kind": alert.event_kind,
        "severity": alert.severity,
        "node": alert.node,
        "resource": alert.resource,
        "task": alert.task,
        "rc": alert.rc,
        "desc": alert.desc,
        "reason": reason,
        "time": alert.time,
    }


# --- delivery ---------------------------------------------------------------------------------


def backoff(tried: int, base: float, cap: float) -> float:
    """The wait after the ``tried``-th failed try (1-based): ``base x 2^(tried-1)``, capped."""
    return min(cap, base * 2.0 ** min(tried - 1, 60))


Verdict = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True)
class Next:
    """What follows a try: ``delivered``; ``retry`` at ``at`` (wall seconds); ``failed``
    (the sink's tries are spent: given up, kept in the log)."""

    verdict: Verdict
    tried: int
    at: float = 0.0


def after_try(ok: bool, tried_before: int, sink: AlertSink, now: float) -> Next:
    """The duty's next state after one more try that succeeded (``ok``) or not."""
    tried = tried_before + 1
    if ok:
        return Next("delivered", tried)
    if tried >= sink.tries:
        return Next("failed", tried)
    return Next("retry", tried, now + backoff(tried, sink.backoff, sink.max_backoff))


def owner_gone(owner_reg: int, registration_now: int | None) -> bool:
    """Rule 6's takeover condition: the owner's registration (mod revision of its
    ``nodes/<owner>``) the duty was claimed under is gone (absent: None) or replaced."""
    return registration_now != owner_reg


def new_duties(
    sinks: Mapping[str, AlertSink], events: Sequence[tuple[str, int, Facts]], after: int
) -> list[tuple[str, str]]:
    """``(sink, event id)`` owed for every event created after store revision ``after``
    (events keep their create revision, so an event written late by a node with a slow clock
    is not missed the way a cursor on the keys' times would miss it)."""
    owed = []
    for event_id, created, facts in events:
        if created <= after:
            continue
        alert = classify(facts)
        if alert is None:
            continue
        owed += [(name, event_id) for name, sink in sinks.items() if wants(name, sink, alert)]
    return owed


DutyAction = Literal["send", "wait", "take", "drop", "leave"]


@dataclass(frozen=True)
class DutyView:
    """A duty as :func:`duty_action` needs it."""

    owner: str
    reg: int
    next_at: float
    sink_known: bool


def duty_action(
    duty: DutyView, me: str, my_reg: int | None, registrations: Mapping[str, int], now: float
) -> DutyAction:
    """What this agent does with one duty. Its own (``me`` under ``my_reg``): ``send`` when
    due, else ``wait``; ``drop`` (settled as failed) when its sink left the spec. Another's
    whose owner's registration is gone (:func:`owner_gone`): ``take`` (rule 6: the take is a
    compare-and-swap on the duty as read, so one agent wins). Else ``leave``."""
    if my_reg is None:
        return "leave"
    if duty.owner == me and duty.reg == my_reg:
        if not duty.sink_known:
            return "drop"
        return "send" if duty.next_at <= now else "wait"
    if owner_gone(duty.reg, registrations.get(duty.owner)):
        return "take"
    return "leave"


def to_trim(log_keys: Sequence[bytes], adding: int, keep: int) -> list[bytes]:
    """The oldest log keys to delete so that ``keep`` remain after ``adding`` more (the
    keys sort by event time within a sink: older events go first)."""
    excess = len(log_keys) + adding - keep
    if excess <= 0:
        return []
    by_event = sorted(log_keys, key=lambda k: k.rsplit(b"/", 1)[-1])
    return by_event[:excess]
