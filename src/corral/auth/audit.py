"""The audit of every change a client makes: one event per action, in the cluster's event
log (``events/``), with who, role, what and the result.

An :class:`AuditEvent` is an :class:`~corral.records.Event` of kind ``audit`` with four
more fields (``who``, ``role``, ``via``, ``action``, ``result``); a reader of events that
does not know them reads a plain event whose reason says it all (``corral events``)::

    alice (operator, cert): maintenance on node ctl1: ok
    local:bob (unauthenticated): spec push: ok
    vic (viewer, password): standby on ctl2: refused: etcd put refused ... permission denied

``result`` is ``ok``, ``refused`` (etcd's RBAC said no: :class:`PermissionDenied`) or
``failed`` (any other error; the reason says which). The event's key is
``events/<time_ns>-audit.<name>`` (the name made fit for a key).

Who may write it: agents, operators and admins may write ``events/``; a viewer writes
nothing, so a change a viewer tries through etcd is refused and its audit too (the CLI says
so on stderr). An agent's API, which writes as ``api:<node>`` (an operator), audits every
authenticated caller, its viewers' refused tries included (:mod:`corral.api.actions`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeVar

from corral.auth.identity import Identity, key_part
from corral.records import Event
from corral.records.codec import opt_str
from corral.store import Keys, PermissionDenied, Store, StoreError

T = TypeVar("T")
Result = Literal["ok", "refused", "failed"]
KIND = "audit"


@dataclass(frozen=True)
class AuditEvent(Event):
    who: str = ""
    role: str = ""
    via: str = ""
    action: str = ""
    result: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        base = Event.from_value(value)
        return cls(
            base.time,
            base.node,
            base.resource,
            base.kind,
            base.reason,
            *(opt_str(value, f) for f in ("who", "role", "via", "action", "result")),
        )

    def to_value(self) -> dict[str, Any]:
        extra = {"who": self.who, "role": self.role, "via": self.via}
        return {**super().to_value(), **extra, "action": self.action, "result": self.result}


def audit_event(
    identity: Identity, action: str, result: Result, detail: str, now: float, resource: str = ""
) -> AuditEvent:
    """The event that says ``identity`` did ``action`` with ``result`` (``detail``: the
    error's text, if any)."""
    reason = f"{identity.describe()}: {action}: {result}" + (f": {detail}" if detail else "")
    return AuditEvent(
        now,
        identity.name,
        resource,
        KIND,
        reason,
        identity.name,
        identity.role or "",
        identity.via if identity.authenticated else "unauthenticated",
        action,
        result,
    )


async def write(store: Store, keys: Keys, event: AuditEvent, now_ns: int) -> None:
    """Append ``event`` to the event log."""
    await store.put(keys.event_key(now_ns, f"audit.{key_part(event.who)}"), event.dump())


async def audited(
    store: Store,
    keys: Keys,
    identity: Identity,
    action: str,
    work: Callable[[], Awaitable[T]],
    *,
    wall: Callable[[], float],
    warn: Callable[[str], None],
    resource: str = "",
) -> T:
    """Run ``work`` and write one audit event for it, whatever its outcome; ``work``'s
    result or exception comes through unchanged. An audit that cannot be written is
    ``warn``-ed (never hides the action's own result)."""
    result: Result = "ok"
    detail = ""
    try:
        return await work()
    except PermissionDenied as exc:
        result, detail = "refused", str(exc)
        raise
    except BaseException as exc:  # a click exit or Ctrl-C too: the action did not finish
        result, detail = "failed", str(exc) or type(exc).__name__
        raise
    finally:
        now = wall()
        event = audit_event(identity, action, result, detail, now, resource)
        try:
            await write(store, keys, event, int(now * 1e9))
        except StoreError as exc:
            warn(f"the audit event was not recorded ({exc}): {event.reason}")
