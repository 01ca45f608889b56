"""The etcd backend's retry policy, without etcd: failures of known kinds are injected into
the store's call loop (endpoints on closed ports are never dialled by these attempts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from aetcd import rpc

from corral.store import LeaseNotFound, StoreError, StoreUnavailable
from corral.store._etcd_wire import Failure, classify
from corral.store.etcd import EtcdStore, parse_endpoint

REFUSED = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"


def rpc_error(code: grpc.StatusCode, details: str) -> rpc.AioRpcError:
    return rpc.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def failing(*errors: BaseException) -> tuple[Callable[..., Any], list[str]]:
    """An attempt that raises ``errors`` in turn, then answers "ok"; records the endpoints."""
    calls: list[str] = []
    queue = list(errors)

    async def attempt(client: Any, budget: float) -> str:
        calls.append(f"{client._host}:{client._port}")
        if queue:
            raise queue.pop(0)
        return "ok"

    return attempt, calls


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        (grpc.StatusCode.UNAVAILABLE, REFUSED, Failure.NOT_SENT),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", Failure.NOT_SENT),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out", Failure.UNKNOWN),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed", Failure.UNKNOWN),
        (grpc.StatusCode.UNAVAILABLE, "Connection reset by peer", Failure.UNKNOWN),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", Failure.UNKNOWN),
        (grpc.StatusCode.UNKNOWN, "context deadline exceeded", Failure.UNKNOWN),
        (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found", Failure.FATAL),
        (grpc.StatusCode.INVALID_ARGUMENT, "duplicate key given in txn", Failure.FATAL),
    ],
)
def test_classify(code: grpc.StatusCode, details: str, kind: Failure) -> None:
    assert classify(rpc_error(code, details)) is kind
    assert classify(TimeoutError()) is Failure.UNKNOWN


async def test_repeatable_calls_move_to_the_next_endpoint() -> None:
    store = EtcdStore(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], timeout=2)
    attempt, calls = failing(
        rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out"), TimeoutError()
    )
    try:
        assert await store._call("put", attempt) == "ok"
        assert calls == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        assert store.endpoint == "127.0.0.1:3"
    finally:
        await store.close()


async def test_txn_is_resent_only_when_surely_not_applied() -> None:
    store = EtcdStore(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], timeout=2)
    try:
        attempt, calls = failing(rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED))
        assert await store._call("txn", attempt, repeat=False) == "ok"
        assert len(calls) == 2
        attempt, calls = failing(
            rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"), TimeoutError()
        )
        with pytest.raises(StoreUnavailable, match="outcome unknown") as caught:
            await store._call("txn", attempt, repeat=False)
        assert caught.value.maybe_applied and len(calls) == 2
    finally:
        await store.close()


async def test_refusals_are_answers_not_failures() -> None:
    store = EtcdStore(["127.0.0.1:1", "127.0.0.1:2"], timeout=2)
    try:
        attempt, calls = failing(
            rpc_error(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
        )
        with pytest.raises(LeaseNotFound):
            await store._call("put", attempt)
        attempt, calls = failing(rpc_error(grpc.StatusCode.PERMISSION_DENIED, "nope"))
        with pytest.raises(StoreError, match=r"refused by 127\.0\.0\.1:1"):
            await store._call("get", attempt)
        assert len(calls) == 1
    finally:
        await store.close()


async def test_timeout_bounds_the_whole_call_and_names_every_endpoint() -> None:
    store = EtcdStore(["127.0.0.1:1", "127.0.0.1:2"], timeout=0.3)
    refused = [rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED) for _ in range(1000)]
    attempt, calls = failing(*refused)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store._call("get", attempt)
        assert "127.0.0.1:1" in str(caught.value) and "127.0.0.1:2" in str(caught.value)
        assert not caught.value.maybe_applied
        assert 2 <= len(calls) < 100  # it breathes between rounds
    finally:
        await store.close()


def test_parse_endpoint() -> None:
    assert parse_endpoint("http://127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_endpoint("127.0.0.1:2379/") == ("127.0.0.1", 2379)
    assert parse_endpoint("http://[::1]:2379") == ("::1", 2379)
    for bad in ("127.0.0.1", "http://:2379", "https://127.0.0.1:2379", "host:port"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    with pytest.raises(ValueError):
        EtcdStore([])
