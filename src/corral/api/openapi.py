"""The API's OpenAPI 3.1 document, written next to the routes (``/v1/openapi.json``);
``tests/api/test_openapi.py`` holds the two together (every route documented, nothing
documented that is not served)."""

from __future__ import annotations

from typing import Any

from corral import __version__

_REASON = {
    "description": "refused, with the reason",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": {"type": "string"}, "stale": {"type": "boolean"}},
            }
        }
    },
}
_OK = {"description": "the answer", "content": {"application/json": {"schema": {"type": "object"}}}}
_ROLE = {
    "name": "role",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["promoted", "active"]},
}
_RESOURCE = {"name": "resource", "in": "path", "required": True, "schema": {"type": "string"}}
_LAST = {
    "name": "last",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 30},
}


def _many(name: str, description: str) -> dict[str, Any]:
    """A repeatable query parameter (``?x=a&x=b``)."""
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "array", "items": {"type": "string"}}}  # fmt: skip


_SIMULATE = [
    _many("fail_node", "the node is lost"),
    _many("fail_resource", "RES@NODE fails its health check"),
    _many("maintenance", "cluster, node:NODE, RESOURCE or RESOURCE@NODE"),
    _many("standby", "the node drains"),
]
_INDEX = {"name": "index", "in": "query", "required": False, "schema": {"type": "string"}}
_WAIT = {"name": "wait", "in": "query", "required": False, "schema": {"type": "string"}}
_POLL = [  # a long poll on every read path (corral.api.feed)
    {**_INDEX, "schema": {"type": "integer", "minimum": 0}},
    {**_WAIT, "description": "how long to wait for a change after index: 30s, 500ms, ..."},
]

# path -> (summary, needs a token, parameters, extra answers)
PATHS: dict[str, tuple[str, bool, list[dict[str, Any]]]] = {
    "/v1/health": ("liveness: 200 while the agent's control loop turns", False, []),
    "/v1/ready": ("readiness: live, a fresh node lease, the store reached", False, []),
    "/v1/health/{resource}": (
        "200 when a healthy instance of the resource runs here (in the role asked); 503 with "
        "the reason, `stale: true` when the agent's state is too old; never 200 for an "
        "exclusive role past the node's lease deadline",
        False,
        [_RESOURCE, _ROLE],
    ),
    "/v1/status": ("what `corral status --json` shows", True, []),
    "/v1/nodes": ("node -> state", True, []),
    "/v1/resources": ("resource -> assignment, running instances, fail counts", True, []),
    "/v1/resources/{resource}": ("one resource", True, [_RESOURCE]),
    "/v1/events": ("the newest events, oldest first, each with its reason", True, [_LAST]),
    "/v1/members": ("every agent's gossip view", True, []),
    "/v1/explain/{resource}": ("why each instance is where it is (scheduler)", True, [_RESOURCE]),
    "/v1/simulate": (
        "what-if on the live state: the scheduler's plan (actions with reasons, notes, the "
        "text `corral simulate` prints) with the faults asked; writes nothing",
        True,
        _SIMULATE,
    ),
    "/v1/openapi.json": ("this document", False, []),
    "/v1/feed": (
        "Server-Sent Events: a snapshot, then every change (id: revision.n); Last-Event-ID "
        "or ?index= resumes; after a compaction an event `reset` with a fresh snapshot",
        True,
        [_INDEX],
    ),
    "/v1/actions/{name}": (
        "run an operator's action (body: a JSON object of its arguments); one audit event",
        True,
        [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {
                    "type": "string",
                    "enum": [
                        "maintenance",
                        "standby",
                        "ban",
                        "move",
                        "cleanup",
                        "restart",
                        "spec-push",
                    ],
                },
            }
        ],
    ),
    "/metrics": ("Prometheus text: node series; cluster series from the controller", True, []),
}


POST = ("/v1/actions/{name}",)


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, (summary, token, params) in PATHS.items():
        if token and path not in ("/metrics", "/v1/feed", *POST):
            params = [*params, *_POLL]
        answers: dict[str, Any] = {"200": _OK, "400": _REASON, "404": _REASON, "503": _REASON}
        if token:
            answers |= {"401": _REASON, "403": _REASON}
        op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": answers}
        if token:
            op["security"] = [{"token": []}]
        if path in POST:
            answers["409"] = _REASON
            op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        paths[path] = {"post" if path in POST else "get": op}
    return {
        "openapi": "3.1.0",
        "info": {"title": "corral agent API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "corral tokens create"}
            }
        },
    }
