"""The read API of real agents: the same views as the CLI, behind tokens; bad tokens and
malformed requests refused with a reason; a dead store is a 503, never a hang."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral.lab.loopback import Cluster
from tests.agent.test_cluster import until
from tests.api.live import get

pytestmark = pytest.mark.etcd


def cli_status(c: Cluster) -> dict[str, object]:
    argv = [sys.executable, "-m", "corral.cli.main", "status", "--json"]
    argv += ["--spec", str(c.spec_file), "--etcd", c.etcd_arg]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_status_is_the_clis_view(served: Cluster, viewer: str) -> None:
    r = get(served, "n2", "/v1/status", viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    cli = cli_status(served)
    assert body["nodes"] == cli["nodes"] == {"n1": "online", "n2": "online", "n3": "online"}
    assert body["resources"].keys() == cli["resources"].keys() == {"web", "api"}  # type: ignore[attr-defined]
    assert body["controller"] == cli["controller"] and body["revision"] > 0
    assert get(served, "n1", "/v1/nodes", viewer).json()["nodes"] == cli["nodes"]
    web = get(served, "n3", "/v1/resources/web", viewer).json()
    assert sorted(i["node"] for i in web["running"]) == ["n1", "n2", "n3"]
    events = get(served, "n1", "/v1/events?last=5", viewer).json()["events"]
    assert 0 < len(events) <= 5 and all("reason" in e for e in events)
    members = get(served, "n1", "/v1/members", viewer).json()["members"]
    await until(lambda: len(get(served, "n1", "/v1/members", viewer).json()["members"]) == 3,
                "every agent's gossip view published")  # fmt: skip
    assert isinstance(members, dict)
    explained = get(served, "n1", "/v1/explain/api", viewer).json()
    assert "api" in explained["explain"]
    scrapes = {n: get(served, n, "/metrics", viewer).text for n in ("n1", "n2", "n3")}
    with_cluster = [n for n, text in scrapes.items() if "corral_cluster_node_state{" in text]
    assert with_cluster == [cli["controller"]]  # cluster series from the controller only
    assert all(f'corral_build_info{{node="{n}"' in t for n, t in scrapes.items())


async def test_no_bad_or_malformed_token_reads_anything(served: Cluster) -> None:
    r = get(served, "n1", "/v1/status")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "needs a token" in r.json()["reason"]
    for bad in ("corral_abcdefabcdef_" + "A" * 43, "hello", "corral_", "' OR 1=1 --"):
        r = get(served, "n1", "/v1/status", bad)
        assert r.status_code == 401, bad
        assert bad not in r.text  # never echoed


async def test_malformed_requests_are_400_or_404_with_a_reason(
    served: Cluster, viewer: str
) -> None:
    for path, code, said in [
        ("/v1/events?last=abc", 400, "whole number"),
        ("/v1/events?last=0", 400, "between 1 and 1000"),
        ("/v1/events?last=99999999999999999999", 400, "between"),
        ("/v1/resources/nosuch", 404, "no resource 'nosuch'"),
        ("/v1/explain/nosuch", 404, "no resource"),
        ("/v1/../../etc/passwd", 404, "no such path"),
    ]:
        r = get(served, "n1", path, viewer)
        assert r.status_code == code and said in r.json()["reason"], (path, r.text)


async def test_a_dead_store_is_a_503_that_says_so(served: Cluster, viewer: str) -> None:
    assert get(served, "n1", "/v1/status", viewer).status_code == 200  # the token is cached
    for member in served.etcd.members:
        member.kill()
    r = get(served, "n1", "/v1/status", viewer)
    assert r.status_code == 503 and "store is unreachable" in r.json()["reason"]
    assert get(served, "n1", "/v1/health/web").status_code == 200  # health answers on
