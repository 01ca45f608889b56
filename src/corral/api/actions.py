"""``POST /v1/actions/<name>``: the operators' actions of :mod:`corral.actions` (the CLI's
``maintenance``, ``standby``, ``ban``, ``move``, ``cleanup``, ``resource restart``, ``spec
push``), run under the caller's token with one audit event each (who, role, what, result).

The body is a JSON object of the action's arguments (:data:`ACTIONS`: name -> builder and
argument types); an unknown or mistyped argument, a name the spec does not know, is a 400 that
names it; a caller below the action's role is a 403 (operator; admin for ``spec-push``); an
action that ran and failed is a 409 with its reason; a store that refuses (etcd's RBAC) is a
403, one that does not answer a 503. The result says what was done (``done``) and the record
written. Bodies are read up to ``MAX_BODY`` bytes.

The API's store client acts as the node's agent: in a cluster with etcd RBAC the agent role may
not write ``admin/`` records, so those actions are refused there (and audited as refused) until
the API acts with the caller's own store identity.
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
from corral.auth.audit import audited
from corral.spec import Spec
from corral.store import Keys, PermissionDenied, StoreError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def _spec_push(spec: Spec, spec_text: str) -> Action:
    return actions.spec_push(spec, spec_text, "api")


def _restart(spec: Spec, name: str, rolling: bool = False, timeout: float = 60.0) -> Action:
    return actions.restart(spec, name, rolling, timeout)


def _alert_test(spec: Spec, sink: str, timeout: float = 30.0) -> Action:
    return actions.alert_test(spec, sink, timeout, "api")


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
    "alert-test": (_alert_test, {"sink": str, "timeout": float}, {"sink"}),
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


def action_routes(reader: Reader) -> list[Route]:
    async def act(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ACTIONS:
            return JSONResponse({"reason": f"no action {name!r} (known: {', '.join(ACTIONS)})"},
                                404)  # fmt: skip
        try:
            who = await reader.tokens.identity(request.headers.get("authorization"), "operator")
            spec = reader.spec()
            action = ACTIONS[name][0](spec, **arguments(name, await _body(request)))
            if RANK.get(who.role or "", 0) < RANK[action.need]:
                raise Refused(403, f"{who.name} has role {who.role}; this needs {action.need}")
            store, keys = reader.store(), Keys(spec.cluster)
            result = await audited(
                store, keys, who, action.said, lambda: action.work(store),
                wall=time.time, warn=log.warning, resource=action.resource,
            )  # fmt: skip
        except Refused as exc:
            return JSONResponse({"reason": exc.reason}, exc.status)
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
