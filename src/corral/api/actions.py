"""``POST /v1/actions/<name>``: the operators' actions of :mod:`corral.actions` (the CLI's
``maintenance``, ``standby``, ``ban``, ``move``, ``cleanup``, ``resource restart``, ``spec
push``), run under the caller's token with one audit event each (who, role, what, result).

The body is a JSON object of the action's arguments (:data:`ACTIONS`: name -> builder and
argument types); an unknown or mistyped argument, a name the spec does not know, is a 400 that
names it; a caller below the action's role is a 403 (operator; admin for ``spec-push``); an
action that ran and failed is a 409 with its reason; a store that refuses (etcd's RBAC) is a
403, one that does not answer a 503. The result says what was done (``done``) and the record
written. Bodies are read up to ``MAX_BODY`` bytes.

Who writes (safety: an agent never holds more than it needs): the API checks the caller
(token, role) and then writes with the store client of ``Reader.writer()``: in a cluster with a
CA bundle, the etcd user ``api:<node>`` with the operator role (its certificate issued by the
agent from the bundle, :func:`corral.pki.api_identity`), never the agent's own identity (the
agent role may not write ``admin/``) nor ``root``. So an API action can do no more than an
operator can, whatever a bug in the API lets through; ``spec-push`` (admin) is refused by etcd
there (403: push the spec with an admin's certificate, ``corral spec push``). Without a bundle
(the operator's own PKI) the API writes as ``api:<node>`` when ``<state-dir>/tls-api`` holds its
files, else as the node (then etcd's RBAC refuses the ``admin/`` records: 403).

Audit: every authenticated call is one audit event (who, role, via ``token``, what, result),
refusals by the caller's role included (written by the API's identity, so a viewer's refused
try is recorded, which the CLI cannot do); an unauthenticated call (401) writes nothing, so
that anyone who reaches the port cannot fill the event log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corral import actions
from corral.actions import Action, ActionError, ActionFailed
from corral.api.auth import RANK, Refused
from corral.api.read import Reader, Unavailable
from corral.auth import Identity
from corral.auth.audit import audit_event, audited, write
from corral.spec import Spec
from corral.store import Keys, PermissionDenied, StoreError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def _spec_push(spec: Spec, spec_text: str) -> Action:
    return actions.spec_push(spec, spec_text, "api")


def _restart(spec: Spec, name: str, rolling: bool = False, timeout: float = 60.0) -> Action:
    return actions.restart(spec, name, rolling, timeout)


# name -> (builder(spec, **arguments), argument -> type, required arguments)
ACTIONS: dict[str, tuple[Callable[..., Action], dict[str, type], set[str]]] = {
    "maintenance": (
        actions.maintenance,
        {"state": str, "cluster": bool, "node": str, "resource": str, "instance": str},
        {"state"},
    ),
    "standby": (actions.standby, {"state": str, "node": str}, {"state", "node"}),
    "ban": (actions.ban, {"instance": str, "clear": bool}, {"instance"}),
    "move": (actions.move, {"resource": str, "node": str, "clear": bool}, {"resource"}),
    "cleanup": (actions.cleanup, {"instance": str}, {"instance"}),
    "restart": (_restart, {"name": str, "rolling": bool, "timeout": float}, {"name"}),
    "spec-push": (_spec_push, {"spec_text": str}, {"spec_text"}),
}


def arguments(name: str, body: object) -> dict[str, Any]:
    """The body checked against :data:`ACTIONS` (:class:`ActionError` names the field)."""
    _, types, required = ACTIONS[name]
    if not isinstance(body, dict):
        raise ActionError("the body must be a JSON object of the action's arguments")
    unknown = sorted(set(body) - set(types))
    if unknown:
        raise ActionError(f"unknown argument(s) {', '.join(unknown)} (known: {', '.join(types)})",
                          unknown[0])  # fmt: skip
    missing = sorted(required - set(body))
    if missing:
        raise ActionError(f"missing argument(s): {', '.join(missing)}", missing[0])
    for key, value in body.items():
        want = types[key]
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ActionError(f"{key} must be a {want.__name__}, not {type(value).__name__}", key)
    if "state" in body and body["state"] not in ("on", "off"):
        raise ActionError(f"state must be on or off, not {body['state']!r}", "state")
    return body


async def _body(request: Request) -> object:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ActionError(f"the body is larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw or b"{}")
    except ValueError as exc:
        raise ActionError(f"the body is not JSON: {exc}") from None


def _shown(result: object) -> object:
    to_value = getattr(result, "to_value", None)
    if callable(to_value):
        return to_value()
    return result if isinstance(result, list | str | int | float | bool | None) else None


async def _refused(reader: Reader, who: Identity, what: str, need: str) -> None:
    """:class:`Refused` (403) for ``who`` below ``need``, audited (a warning if it cannot be)."""
    reason = f"{who.name} has role {who.role}; this needs {need}"
    now = time.time()
    event = audit_event(who, what, "refused", reason, now)
    try:
        await write(reader.writer(), Keys(reader.spec().cluster), event, int(now * 1e9))
    except (StoreError, Unavailable) as exc:
        log.warning("the audit event was not recorded (%s): %s", exc, event.reason)
    raise Refused(403, reason)


def action_routes(reader: Reader) -> list[Route]:
    async def act(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ACTIONS:
            return JSONResponse({"reason": f"no action {name!r} (known: {', '.join(ACTIONS)})"},
                                404)  # fmt: skip
        try:
            who = await reader.tokens.identity(request.headers.get("authorization"), "viewer")
            if RANK.get(who.role or "", 0) < RANK["operator"]:
                await _refused(reader, who, name, "operator")
            spec = reader.spec()
            action = ACTIONS[name][0](spec, **arguments(name, await _body(request)))
            if RANK.get(who.role or "", 0) < RANK[action.need]:
                await _refused(reader, who, action.said, action.need)
            store, keys = reader.writer(), Keys(spec.cluster)
            result = await audited(
                store, keys, who, action.said, lambda: action.work(store, who.name),
                wall=time.time, warn=log.warning, resource=action.resource,
            )  # fmt: skip
        except Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"reason": exc.reason}, exc.status, headers=headers)
        except ActionError as exc:
            return JSONResponse({"reason": str(exc), "field": exc.field}, 400)
        except ActionFailed as exc:
            return JSONResponse({"reason": str(exc)}, 409)
        except PermissionDenied as exc:
            return JSONResponse({"reason": f"refused by the store: {exc}"}, 403)
        except (StoreError, Unavailable) as exc:
            return JSONResponse({"reason": f"the store is unreachable: {exc}"}, 503)
        return JSONResponse({"done": action.said, "result": _shown(result)})

    return [Route("/v1/actions/{name}", act, methods=["POST"])]
