"""Status records under concurrency: a round and a health verdict's callback (which runs in the
service's check task) publish at once. Reproduced deterministically on an in-memory store whose
writes are held, so both coroutines are inside one store call at the same moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corral.core.health import CheckOutcome
from corral.records import StatusRecord

from .fakes import GatedStore, local_service, make_agent, spec_text, until


async def statuses(store: GatedStore) -> dict[str, str]:
    """resource -> reported health of its first instance, as ``corral status`` reads them."""
    out = {}
    for kv in (await store.range(b"/corral/t/status/n1/")).kvs:
        out[kv.key.decode().rsplit("/", 1)[-1]] = StatusRecord.read(kv.value).instances[0].health
    return out


def becomes_healthy(agent, name: str) -> None:  # type: ignore[no-untyped-def]
    svc = agent.services[name]
    change = svc.health.record(0, CheckOutcome("ok", "fine"), agent.clock.now())
    assert change is not None and svc.verdict == "healthy"
    svc.detail = change.reason


async def test_a_round_and_a_verdict_publishing_at_once_neither_fails(tmp_path: Path) -> None:
    """The chaos run's crash loop: both saw a stopped resource's record and both deleted it;
    the second ``del`` raised KeyError (in the main loop, or in the check task, killing it)."""
    store = GatedStore()
    agent = make_agent(store, tmp_path, spec_text("web", "api"))
    agent.lease = (await store.grant(30)).id
    local_service(agent, "web")
    local_service(agent, "api")
    await agent.status.publish()
    assert await statuses(store) == {"web": "starting", "api": "starting"}

    del agent.services["api"]  # api stopped; its record must go
    store.hold("delete", b"/status/")
    round_publish = asyncio.create_task(agent.status.publish())
    await until(lambda: store.waiting["delete"] == 1, 1, "the round inside the delete")
    becomes_healthy(agent, "web")
    verdict = asyncio.create_task(agent.act.on_verdict(agent.services["web"]))
    await asyncio.sleep(0.05)  # the verdict's publish runs as far as it can
    store.release("delete")
    results = await asyncio.gather(round_publish, verdict, return_exceptions=True)

    assert list(results) == [None, None], results
    assert await statuses(store) == {"web": "healthy"}
    await agent.status.publish()  # and the agent's bookkeeping agrees with the store
    assert await statuses(store) == {"web": "healthy"}


async def test_an_older_view_of_the_services_never_lands_after_a_newer_one(
    tmp_path: Path,
) -> None:
    """A round read the services (web starting) and its put was slow; meanwhile web turned
    healthy and its verdict was published. The round's stale record must not land last."""
    store = GatedStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    agent.lease = (await store.grant(30)).id
    local_service(agent, "web")
    store.hold("put", b"/status/", count=1)  # only the round's put is slow
    round_publish = asyncio.create_task(agent.status.publish())
    await until(lambda: store.waiting["put"] == 1, 1, "the round inside its put")
    becomes_healthy(agent, "web")
    verdict = asyncio.create_task(agent.act.on_verdict(agent.services["web"]))
    await asyncio.sleep(0.05)
    store.release("put")
    await asyncio.gather(round_publish, verdict)

    assert await statuses(store) == {"web": "healthy"}  # what `corral status` shows now


async def test_a_publish_cancelled_inside_a_write_is_written_again(tmp_path: Path) -> None:
    """A check task stopped while its verdict's publish was inside a write: the next publish
    writes (or deletes) that record again, and nothing waits on a held lock."""
    store = GatedStore()
    agent = make_agent(store, tmp_path, spec_text("web", "api"))
    agent.lease = (await store.grant(30)).id
    local_service(agent, "web")
    store.hold("put", b"/status/n1/web")
    task = asyncio.create_task(agent.status.publish())
    await until(lambda: store.waiting["put"] == 1, 1, "inside the put")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.release("put")
    await asyncio.wait_for(agent.status.publish(), 1)
    assert await statuses(store) == {"web": "starting"}

    local_service(agent, "api")
    await agent.status.publish()
    del agent.services["api"]
    store.hold("delete", b"/status/")
    task = asyncio.create_task(agent.status.publish())
    await until(lambda: store.waiting["delete"] == 1, 1, "inside the delete")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.release("delete")
    await asyncio.wait_for(agent.status.publish(), 1)
    assert await statuses(store) == {"web": "starting"}
