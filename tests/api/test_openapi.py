"""The OpenAPI document and the served routes agree, and requests fuzzed from the document
(hypothesis) are answered as documented: JSON, a documented status, never a 500."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from corral.agent.snapshot import AgentSnapshot, InstanceView
from corral.api import Reader, Source, make_app, openapi
from corral.auth.tokens import create
from corral.spec import load_spec_text
from corral.store import Keys
from corral.store.memory import MemoryStore

SPEC = load_spec_text("""
cluster: fuzz
nodes: {n1: {address: 198.18.0.11}}
resources:
  web: {process: "sleep 1000"}
""")
WEB = InstanceView("web", "web", None, "started", "healthy", "healthy", False, False)
STORE = MemoryStore()
TOKEN, _ = asyncio.run(create(STORE, Keys("fuzz"), "vic", "viewer", by="root", now=0.0))


def latest() -> AgentSnapshot:
    now = time.monotonic()
    return AgentSnapshot(
        "fuzz", "n1", now, time.time(), 3.0, lease=1, lease_deadline=now + 2,
        instances=(WEB,), resources=frozenset(SPEC.resources), spec=SPEC,
    )  # fmt: skip


APP = make_app(Source(latest), Reader(latest, lambda: STORE))
LOOP = asyncio.new_event_loop()  # one loop for every request (and the app's semaphore)
CLIENT = httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://api")


def get(url: str, **kw: object) -> httpx.Response:
    return LOOP.run_until_complete(CLIENT.get(url, **kw))  # type: ignore[arg-type]


def test_every_route_is_documented_and_nothing_else() -> None:
    served = {r.path for r in APP.routes if isinstance(r, Route)}
    assert served == set(openapi.PATHS)
    doc = get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and set(doc["paths"]) == served
    for path, item in doc["paths"].items():
        (op,) = item.values()
        for name in (p["name"] for p in op["parameters"] if p["in"] == "path"):
            assert "{" + name + "}" in path


TEXT = st.text(st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(sorted(set(openapi.PATHS) - {"/v1/feed", *openapi.POST})),
    segment=TEXT | st.sampled_from(["web", "nosuch", "..", "%00"]),
    query=st.dictionaries(st.sampled_from(["role", "last", "x"]), TEXT, max_size=2),
    token=st.sampled_from([None, TOKEN, "corral_000000000000_" + "A" * 43, "garbage"]),
)
@example(path="/v1/resources/{resource}", segment="/", query={}, token=None)  # was a 307
def test_fuzzed_requests_get_documented_json_answers(
    path: str, segment: str, query: dict[str, str], token: str | None
) -> None:
    url = path.replace("{resource}", quote(segment, safe="") or "x")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = get(url, params=query, headers=headers)
    documented = {int(c) for c in openapi.document()["paths"][path]["get"]["responses"]}
    # the feed is a stream (tests/api/test_feed.py), actions are POSTs (test_actions.py)
    assert r.status_code in documented | {404}, (url, query, r.text)
    assert r.status_code != 500
    if path == "/metrics" and r.status_code == 200:
        assert r.text.startswith("# HELP")
        return
    body = r.json()
    if r.status_code != 200:
        assert isinstance(body["reason"], str) and body["reason"]
