"""``/v1/feed``: the change feed as Server-Sent Events (see :mod:`.feed` for the contract)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from corral.api.auth import Refused
from corral.api.feed import FeedError, changes, position, sse, with_heartbeats
from corral.api.read import Reader, Unavailable
from corral.store import CompactedError, Keys


async def stream(reader: Reader, start: tuple[int, int] | None) -> AsyncGenerator[bytes, None]:
    """The events from ``start`` (``(revision, changes of it to skip)``; None: a snapshot
    first). A compacted start: ``reset`` with a fresh snapshot, then on from it. A store that
    stops answering ends the stream with ``event: error`` (the client reconnects with its
    ``Last-Event-ID``)."""
    keys = Keys(reader.spec().cluster)
    try:
        while True:
            if start is None:
                cluster = await reader.cluster()
                yield sse("snapshot", cluster.view(), str(cluster.revision))
                start = (cluster.revision + 1, 0)
            try:
                async for item in with_heartbeats(changes(reader.store(), keys, *start)):
                    if item is None:
                        yield b": keepalive\n\n"
                        continue
                    ident, body = item
                    yield sse("change", body, ident)
                    start = position(ident)
                return
            except CompactedError as exc:
                cluster = await reader.cluster()
                gone = {"compacted": True, "compact_revision": exc.compact_revision}
                yield sse("reset", {**gone, "status": cluster.view()}, str(cluster.revision))
                start = (cluster.revision + 1, 0)
    except Unavailable as exc:
        yield sse("error", {"reason": str(exc)})


def feed_routes(reader: Reader) -> list[Route]:
    async def feed(request: Request) -> Response:
        try:
            await reader.tokens.identity(request.headers.get("authorization"), "viewer")
            resume = request.headers.get("last-event-id") or request.query_params.get("index")
            start = position(resume) if resume is not None else None
            reader.spec()  # 503 before the stream starts, not inside it
        except Refused as exc:
            return JSONResponse({"reason": exc.reason}, exc.status)
        except FeedError as exc:
            return JSONResponse({"reason": str(exc)}, 400)
        except Unavailable as exc:
            return JSONResponse({"reason": str(exc)}, 503)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            stream(reader, start), media_type="text/event-stream", headers=headers
        )

    return [Route("/v1/feed", feed)]
