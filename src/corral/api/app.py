"""The agent's HTTP API as an ASGI application (Starlette), served by :mod:`.server`.

Why Starlette and not FastAPI: the API answers from an immutable snapshot and from the store,
with bodies we shape ourselves; FastAPI's value (request models, dependency injection, an
OpenAPI document derived from them) would add a layer of per-request work and imports to
every agent for routes that take one path parameter and a query. The OpenAPI document is
written next to the routes instead (:mod:`.openapi`), and a test holds the two together.

Every handler answers JSON and never raises: an unexpected error is a 500 with a reason, and
one log line without a traceback.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corral.agent.guard import read_listing
from corral.agent.snapshot import AgentSnapshot, InstanceView
from corral.api import health, openapi
from corral.api.actions import action_routes
from corral.api.metrics import metrics_routes
from corral.api.read import Reader, read_routes
from corral.api.sse import feed_routes

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]


class Source:
    """Where the API reads the agent: ``latest()`` returns the last snapshot (None before
    the first). ``clock``: CLOCK_MONOTONIC, the agent's and the lease guard's."""

    def __init__(
        self,
        latest: Callable[[], AgentSnapshot | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.latest, self.clock = latest, clock

    def guard_deadline(self, snap: AgentSnapshot, inst: InstanceView) -> float | None:
        """The lease guard's deadline for ``inst`` when the guard lists it (read now: it is
        what the guard acts on), else None. A listing of nothing has no deadline (NaN)."""
        listing = read_listing(Path(snap.state_dir) / "guard.json")
        return listing.deadline if inst.key in listing.exclusive else None


def json_answer(answer: health.Answer) -> JSONResponse:
    code, body = answer
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})


def guarded(handler: Handler) -> Handler:
    """The handler's answer, or a 500 naming the error (one log line, no traceback)."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # an API bug must not become a stack in logs
            log.error("API %s %s failed: %s: %s", request.method, request.url.path,
                      type(exc).__name__, exc)  # fmt: skip
            return JSONResponse({"reason": f"internal error: {type(exc).__name__}"}, 500)

    return run


def health_routes(source: Source) -> list[Route]:
    """``/v1/health`` (liveness), ``/v1/ready`` and ``/v1/health/{resource}`` (see
    :mod:`.health`). No authentication: load balancers call them, and they tell only what a
    load balancer sees anyway (up or not, and why)."""

    async def live(request: Request) -> Response:
        return json_answer(health.liveness(source.latest(), source.clock()))

    async def ready(request: Request) -> Response:
        return json_answer(health.readiness(source.latest(), source.clock()))

    async def resource(request: Request) -> Response:
        role = request.query_params.get("role")
        if role is not None and role not in health.ROLES:
            return json_answer(
                (400, {"reason": f"role must be one of {', '.join(health.ROLES)}, not {role!r}"})
            )
        snap = source.latest()
        answer = health.resource_health(
            snap, request.path_params["resource"], role,  # type: ignore[arg-type]
            source.clock(),
            lambda inst: source.guard_deadline(snap, inst) if snap is not None else math.nan,
        )  # fmt: skip
        return json_answer(answer)

    return [
        Route("/v1/health", guarded(live), methods=["GET", "HEAD"]),
        Route("/v1/ready", guarded(ready), methods=["GET", "HEAD"]),
        Route("/v1/health/{resource}", guarded(resource), methods=["GET", "HEAD"]),
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"reason": f"no such path: {request.url.path}"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"reason": f"{request.method} is not allowed here"}, status_code=405)


def make_app(source: Source, reader: Reader | None = None) -> Starlette:
    """The whole API over ``source`` (the health endpoints) and ``reader`` (the rest; None:
    the health endpoints only)."""
    doc = openapi.document()

    async def spec_doc(request: Request) -> Response:
        return JSONResponse(doc)

    routes = [*health_routes(source), Route("/v1/openapi.json", spec_doc)]
    if reader is not None:
        routes += [*read_routes(reader), *metrics_routes(reader), *feed_routes(reader)]
        routes += action_routes(reader)
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    # no 307 to a slash-less twin (a resource named "/" would be redirected): every path
    # answers itself, in JSON, as the OpenAPI document says (found by tests/api/test_openapi)
    app.router.redirect_slashes = False
    return app
