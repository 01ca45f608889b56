"""The read API: status, nodes, resources, events, members, explain, simulate: the views of
:mod:`corral.records.view` (the ones ``corral status``/``events``/``members`` print) and the
scheduler's ``explain``, over the store as this agent's own client reads it now.

The store client is the API's own, made on first use inside the API's event loop (a client of
the agent's loop would tie the API to it, which :mod:`.server` exists to avoid), so an idle
agent whose API nobody reads holds no second connection. The running spec comes from the
agent's snapshot. A store that does not answer is a 503 naming it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corral.actions import ActionError
from corral.actions.whatif import FIELDS, inject, what_if
from corral.agent.snapshot import AgentSnapshot
from corral.api.auth import Refused, Tokens
from corral.api.feed import FeedError, changed_after, long_poll
from corral.api.params import BadRequest, int_param
from corral.auth.read import read_public
from corral.auth.tokens import TokenRecord
from corral.core.scheduler import explain, schedule
from corral.records import snapshot_from_kvs
from corral.records.view import cluster_view, events_of, members_of
from corral.spec import Spec
from corral.store import CompactedError, Keys, KeyValue, Store, StoreError

MAX_EVENTS = 1000


class Unavailable(Exception):
    """503: the agent has no snapshot yet, or the store does not answer."""


class Cluster:
    """The cluster as read now: ``spec`` (running), ``keys``, ``kvs`` (public spans) and the
    store ``revision`` the reads saw."""

    def __init__(self, spec: Spec, keys: Keys, kvs: list[KeyValue], revision: int) -> None:
        self.spec, self.keys, self.kvs, self.revision = spec, keys, kvs, revision

    def view(self) -> dict[str, Any]:
        return cluster_view(self.spec, self.keys, self.kvs)


class Reader:
    """The API's store clients, each made on first use: ``store()`` (``open_store``: the
    node's identity) for the reads and the tokens, ``writer()`` (``open_writer``: the API's
    write identity, ``api:<node>``, see :mod:`.actions`; without one, ``store()``) for the
    actions and their audit."""

    def __init__(
        self,
        latest: Callable[[], AgentSnapshot | None],
        open_store: Callable[[], Store],
        open_writer: Callable[[], Store] | None = None,
    ) -> None:
        self.latest, self._open, self._open_writer = latest, open_store, open_writer
        self._store: Store | None = None
        self._writer: Store | None = None
        self.tokens = Tokens(self._token_record, time.monotonic)

    def store(self) -> Store:
        if self._store is None:
            self._store = self._open()
        return self._store

    def writer(self) -> Store:
        if self._open_writer is None:
            return self.store()
        if self._writer is None:
            self._writer = self._open_writer()
        return self._writer

    def spec(self) -> Spec:
        snap = self.latest()
        if snap is None or snap.spec is None:
            raise Unavailable("the agent has not finished its first turn")
        return snap.spec

    async def cluster(self) -> Cluster:
        spec = self.spec()
        keys = Keys(spec.cluster)
        try:
            kvs, revision = await read_public(self.store(), keys)
        except StoreError as exc:
            raise Unavailable(f"the store is unreachable: {exc}") from None
        return Cluster(spec, keys, kvs, revision)

    async def _token_record(self, found: str) -> TokenRecord | None:
        try:
            kv = await self.store().get(Keys(self.spec().cluster).token(found))
        except StoreError as exc:
            raise Unavailable(f"the store is unreachable: {exc}") from None
        return TokenRecord.parse(kv.value) if kv is not None else None

    async def wait(self, request: Request) -> bool:
        """A long poll (:mod:`.feed`): wait for a change after ``?index=``; True when that
        revision is compacted (answered at once, and said)."""
        poll = long_poll(request)
        if poll is None:
            return False
        try:
            await changed_after(self.store(), Keys(self.spec().cluster), *poll)
        except CompactedError:
            return True
        except StoreError as exc:
            raise Unavailable(f"the store is unreachable: {exc}") from None
        return False

    async def close(self) -> None:
        for store in (self._store, self._writer):
            if store is not None:
                await store.close()


Read = Callable[[Request, Cluster], Awaitable[dict[str, Any]]]


def reading(reader: Reader, read: Read, need: str = "viewer") -> Callable[..., Any]:
    """A route handler: the caller checked (role ``need``), the cluster read, ``read``'s
    body answered with the revision it was read at; refusals as JSON with their reason."""

    async def handle(request: Request) -> Response:
        try:
            await reader.tokens.identity(request.headers.get("authorization"), need)
            compacted = await reader.wait(request)
            cluster = await reader.cluster()
            body = await read(request, cluster)
            if compacted:
                body["compacted"] = True  # the index asked for is older than the store keeps
        except FeedError as exc:
            return JSONResponse({"reason": str(exc)}, 400)
        except Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"reason": exc.reason}, exc.status, headers=headers)
        except Unavailable as exc:
            return JSONResponse({"reason": str(exc)}, 503)
        except BadRequest as exc:
            return JSONResponse({"reason": str(exc)}, exc.status)
        return JSONResponse({**body, "revision": cluster.revision})

    return handle


async def _status(request: Request, c: Cluster) -> dict[str, Any]:
    return c.view()


async def _nodes(request: Request, c: Cluster) -> dict[str, Any]:
    view = c.view()
    return {"nodes": view["nodes"], "maintenance": view["node_maintenance"]}


async def _resources(request: Request, c: Cluster) -> dict[str, Any]:
    return {"resources": c.view()["resources"]}


async def _resource(request: Request, c: Cluster) -> dict[str, Any]:
    name = request.path_params["resource"]
    found = c.view()["resources"].get(name)
    if found is None:
        raise BadRequest(f"no resource {name!r} in the running spec", 404)
    return {"resource": name, **found}


async def _events(request: Request, c: Cluster) -> dict[str, Any]:
    last = int_param(request, "last", 30, 1, MAX_EVENTS)
    return {"events": [e.to_value() for e in events_of(c.keys, c.kvs, last)]}


async def _members(request: Request, c: Cluster) -> dict[str, Any]:
    views = members_of(c.keys, c.kvs)
    return {"members": {node: [r.to_value() for r in view] for node, view in views.items()}}


async def _simulate(request: Request, c: Cluster) -> dict[str, Any]:
    """What-if on the live state (:mod:`corral.actions.whatif`): ``?fail_node=N``,
    ``fail_resource=RES@NODE``, ``maintenance=WHAT``, ``standby=N``, each repeatable."""
    faults = {key: tuple(request.query_params.getlist(name)) for key, (_, name) in FIELDS.items()}
    snap = snapshot_from_kvs(c.spec, c.keys, c.kvs, now=time.time())
    try:
        return what_if(c.spec, inject(c.spec, snap, **faults))
    except ActionError as exc:
        raise BadRequest(f"{FIELDS[exc.field][1]}: {exc}", 400) from None


async def _explain(request: Request, c: Cluster) -> dict[str, Any]:
    name = request.path_params["resource"]
    if name not in c.spec.resources:
        raise BadRequest(f"no resource {name!r} in the running spec", 404)
    snap = snapshot_from_kvs(c.spec, c.keys, c.kvs, now=time.time())
    return {"resource": name, "explain": explain(c.spec, snap, schedule(c.spec, snap), name)}


def read_routes(reader: Reader) -> list[Route]:
    return [
        Route("/v1/status", reading(reader, _status)),
        Route("/v1/nodes", reading(reader, _nodes)),
        Route("/v1/resources", reading(reader, _resources)),
        Route("/v1/resources/{resource}", reading(reader, _resource)),
        Route("/v1/events", reading(reader, _events)),
        Route("/v1/members", reading(reader, _members)),
        Route("/v1/explain/{resource}", reading(reader, _explain)),
        Route("/v1/simulate", reading(reader, _simulate)),
    ]
