"""Helpers of the tests that talk to real agents' APIs (tests/api/conftest.py starts them)."""

from __future__ import annotations

import httpx

from corral.lab.loopback import NODES, Cluster


def health(c: Cluster, node: str, path: str) -> tuple[int, dict[str, object]]:
    """(status, body); (0, {}) when the agent does not answer within 2 s."""
    try:
        r = httpx.get(f"http://{NODES[node]}:{c.http_port}{path}", timeout=2.0)
    except httpx.HTTPError:
        return 0, {}
    return r.status_code, r.json()


def holders(c: Cluster) -> list[str]:
    return [n for n in NODES if health(c, n, "/v1/health/api?role=active")[0] == 200]


def get(c: Cluster, node: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"http://{NODES[node]}:{c.http_port}{path}", headers=headers, timeout=10)
