"""The read API of real agents: the same views as the CLI, behind tokens; bad tokens and
malformed requests refused with a reason; a dead store is a 503, never a hang."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from corral.lab.loopback import Cluster
from corral.store import Keys
from tests.agent.test_cluster import until
from tests.api.conftest import SHARED
from tests.api.live import get

pytestmark = [pytest.mark.etcd, SHARED]


def cli_status(c: Cluster) -> dict[str, object]:
    argv = [sys.executable, "-m", "corral.cli.main", "status", "--json"]
    argv += ["--spec", str(c.spec_file), "--etcd", c.etcd_arg]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_status_is_the_clis_view(live: Cluster, live_viewer: str) -> None:
    r = get(live, "n2", "/v1/status", live_viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    cli = cli_status(live)
    assert body["nodes"] == cli["nodes"] == {"n1": "online", "n2": "online", "n3": "online"}
    assert body["resources"].keys() == cli["resources"].keys() == {"web", "api"}  # type: ignore[attr-defined]
    assert body["controller"] == cli["controller"] and body["revision"] > 0
    assert get(live, "n1", "/v1/nodes", live_viewer).json()["nodes"] == cli["nodes"]
    web = get(live, "n3", "/v1/resources/web", live_viewer).json()
    assert sorted(i["node"] for i in web["running"]) == ["n1", "n2", "n3"]
    events = get(live, "n1", "/v1/events?last=5", live_viewer).json()["events"]
    assert 0 < len(events) <= 5 and all("reason" in e for e in events)
    members = get(live, "n1", "/v1/members", live_viewer).json()["members"]
    await until(lambda: len(get(live, "n1", "/v1/members", live_viewer).json()["members"]) == 3,
                "every agent's gossip view published")  # fmt: skip
    assert isinstance(members, dict)
    explained = get(live, "n1", "/v1/explain/api", live_viewer).json()
    assert "api" in explained["explain"]
    scrapes = {n: get(live, n, "/metrics", live_viewer).text for n in ("n1", "n2", "n3")}
    with_cluster = [n for n, text in scrapes.items() if "corral_cluster_node_state{" in text]
    assert with_cluster == [cli["controller"]]  # cluster series from the controller only
    assert all(f'corral_build_info{{node="{n}"' in t for n, t in scrapes.items())


async def test_no_bad_token_or_malformed_request_reads_anything(
    live: Cluster, live_viewer: str
) -> None:
    r = get(live, "n1", "/v1/status")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "needs a token" in r.json()["reason"]
    for bad in ("corral_abcdefabcdef_" + "A" * 43, "hello", "corral_", "' OR 1=1 --"):
        r = get(live, "n1", "/v1/status", bad)
        assert r.status_code == 401, bad
        assert bad not in r.text  # never echoed
    for path, code, said in [
        ("/v1/events?last=abc", 400, "whole number"),
        ("/v1/events?last=0", 400, "between 1 and 1000"),
        ("/v1/events?last=99999999999999999999", 400, "between"),
        ("/v1/resources/nosuch", 404, "no resource 'nosuch'"),
        ("/v1/explain/nosuch", 404, "no resource"),
        ("/v1/../../etc/passwd", 404, "no such path"),
    ]:
        r = get(live, "n1", path, live_viewer)
        assert r.status_code == code and said in r.json()["reason"], (path, r.text)


async def test_the_change_feed_over_real_etcd(live: Cluster, live_viewer: str) -> None:
    """A long poll answers after a change; the SSE stream of another agent sends it with the
    revision as its id; a resume from a compacted revision is a reset, not a gap."""
    index = get(live, "n1", "/v1/nodes", live_viewer).json()["revision"]
    store = live.etcd.store()
    url = f"http://127.0.0.12:{live.http_port}/v1/feed"
    headers = {"Authorization": f"Bearer {live_viewer}"}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            nodes = f"http://127.0.0.11:{live.http_port}/v1/nodes?index={index}&wait=20s"
            poll = asyncio.create_task(client.get(nodes, headers=headers))
            async with client.stream("GET", url, headers=headers) as feed:
                lines = feed.aiter_lines()
                snap = await until_line(lines, '"cluster":"agenttest"')
                assert snap[1] == "event: snapshot"
                put = await store.put(Keys("agenttest").admin("note"), b'"hello"')
                seen = await until_line(lines, '"key":"admin/note"')
                assert seen[0] == f"id: {put}.0"
            assert (await poll).json()["revision"] >= put
            later = await store.put(Keys("agenttest").admin("note"), b'"again"')
            await store.compact(later)  # the revisions up to `put` are gone
            headers["Last-Event-ID"] = str(index)
            async with client.stream("GET", url, headers=headers) as feed:
                reset = await until_line(feed.aiter_lines(), '"compacted":true')
                assert reset[1] == "event: reset"
    finally:
        await store.close()


async def until_line(lines: AsyncIterator[str], marker: str) -> list[str]:
    """The lines of the first SSE event whose data holds ``marker``."""
    event: list[str] = []
    async with asyncio.timeout(15):
        async for line in lines:
            if line:
                event.append(line)
                continue
            if any(marker in x for x in event):
                return event
            event = []
    raise AssertionError(f"the stream ended before {marker}")
