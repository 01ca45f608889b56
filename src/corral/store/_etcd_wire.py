"""Conversions between corral's store types and etcd's protobuf messages (aetcd's generated
``rpc`` module), and the classification of failures that drives the retry policy of
:mod:`corral.store.etcd`. Private: no I/O here.
"""

from __future__ import annotations

import enum
from typing import Any

import aetcd
import aetcd.exceptions as aex
from aetcd import rpc

from corral.store._etcd_http import GatewayError
from corral.store.base import Compare, Delete, KeyValue, Op, Put, WatchEvent, prefix_end

# Sent with every request: a member that has no raft leader refuses at once ("etcdserver: no
# leader") instead of letting the request wait out etcd's 5 s+ request timeout, and etcd
# cancels our watch streams on a member that lost its leader (so they move elsewhere).
REQUIRE_LEADER = (("hasleader", "true"),)

# gRPC keepalive pings notice a member that hangs or is cut off with our TCP connection still
# open (an idle watch would otherwise wait forever). etcd refuses pings more often than
# --grpc-keepalive-min-time (5 s by default) and pings on idle connections, hence these values.
CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 3_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.http2.max_pings_without_data": 0,
}


class Failure(enum.Enum):
    NOT_SENT = "not sent"  # no member applied it: safe to send again, even a txn
    UNKNOWN = "unknown"  # may have been applied: only repeatable calls go again
    FATAL = "fatal"  # a real answer (refusal): translate, do not retry


# gRPC codes of gateway answers that are failures to reach a working member, not refusals:
# CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE
_GATEWAY_FAILURES = (1, 2, 4, 13, 14)

# Details of UNAVAILABLE errors that prove the request never reached a member able to apply it.
_NOT_SENT_MARKS = ("failed to connect to all addresses", "connection refused", "no leader")


def rpc_error(exc: BaseException) -> rpc.AioRpcError | None:
    """The gRPC error behind ``exc`` (aetcd wraps them in its ClientError family)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, rpc.AioRpcError):
            return seen
        seen = seen.__cause__
    return None


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, TimeoutError | aex.WatchTimeoutError | aex.ConnectionTimeoutError):
        return Failure.UNKNOWN
    if isinstance(exc, GatewayError):  # a lease renewal over the HTTP gateway
        if "no leader" in exc.message.lower():
            return Failure.NOT_SENT
        return Failure.UNKNOWN if exc.code in _GATEWAY_FAILURES else Failure.FATAL
    error = rpc_error(exc)
    if error is None:
        # aetcd's connection helpers raise these without a gRPC cause
        if isinstance(exc, aex.ConnectionFailedError | OSError):
            return Failure.NOT_SENT
        return Failure.FATAL
    code, details = error.code(), (error.details() or "").lower()
    if code == rpc.StatusCode.UNAVAILABLE:
        if any(mark in details for mark in _NOT_SENT_MARKS):
            return Failure.NOT_SENT
        return Failure.UNKNOWN  # "leader changed", "request timed out", connection reset...
    if code == rpc.StatusCode.UNAUTHENTICATED and "invalid auth token" in details:
        return Failure.NOT_SENT  # an expired login: a fresh connection logs in again
    if code == rpc.StatusCode.UNKNOWN and ("deadline exceeded" in details or "canceled" in details):
        return Failure.UNKNOWN  # etcd's own context ran out: a timeout, reported server-side
    if code in (
        rpc.StatusCode.DEADLINE_EXCEEDED,
        rpc.StatusCode.CANCELLED,  # our channel was closed under the call
        rpc.StatusCode.INTERNAL,  # e.g. a stream reset by a dying member
    ):
        return Failure.UNKNOWN
    return Failure.FATAL


def denied(exc: BaseException) -> bool:
    """etcd's RBAC refused the request (or the client's credentials)."""
    error = rpc_error(exc)
    if error is None:
        return False
    details = (error.details() or "").lower()
    return error.code() == rpc.StatusCode.PERMISSION_DENIED or any(
        mark in details
        for mark in ("permission denied", "user name is empty", "authentication failed")
    )


def vague(exc: BaseException) -> bool:
    """gRPC's "Internal error from Core": what a write on a stream that the server just ended
    reports instead of the server's status (e.g. "no leader", seen by the previous try)."""
    error = rpc_error(exc)
    return (
        error is not None
        and error.code() == rpc.StatusCode.INTERNAL
        and "internal error from core" in (error.details() or "").lower()
    )


def describe(exc: BaseException) -> str:
    """One line for error messages."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    error = rpc_error(exc)
    if error is not None:
        return f"{error.code().name}: {error.details()}"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def to_kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=int(kv.lease),
    )


def to_event(event: Any) -> WatchEvent:
    """An aetcd watch event (``kind``, ``kv``, ``prev_kv``) as a :class:`WatchEvent`."""
    key, revision = bytes(event.kv.key), int(event.kv.mod_revision)
    prev = to_kv(event.prev_kv) if event.prev_kv is not None and event.prev_kv.key else None
    if event.kind == aetcd.EventKind.DELETE:
        return WatchEvent("delete", key, b"", revision, prev)
    return WatchEvent("put", key, bytes(event.kv.value), revision, prev, to_kv(event.kv))


_TARGETS = {
    "value": rpc.Compare.VALUE,
    "version": rpc.Compare.VERSION,
    "create_revision": rpc.Compare.CREATE,
    "mod_revision": rpc.Compare.MOD,
}
_OPS = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}


def compare_message(c: Compare) -> Any:
    message = rpc.Compare(key=c.key, target=_TARGETS[c.target], result=_OPS[c.op])
    if isinstance(c.value, bytes):
        message.value = c.value
    elif c.target == "version":
        message.version = c.value
    elif c.target == "create_revision":
        message.create_revision = c.value
    else:
        message.mod_revision = c.value
    return message


def put_request(op: Put) -> Any:
    return rpc.PutRequest(key=op.key, value=op.value, lease=op.lease)


def delete_request(op: Delete) -> Any:
    end = prefix_end(op.key) if op.prefix else b""
    return rpc.DeleteRangeRequest(key=op.key, range_end=end)


def request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=put_request(op))
    return rpc.RequestOp(request_delete_range=delete_request(op))


def txn_request(compares: list[Compare], success: list[Op], failure: list[Op]) -> Any:
    return rpc.TxnRequest(
        compare=[compare_message(c) for c in compares],
        success=[request_op(op) for op in success],
        failure=[request_op(op) for op in failure],
    )
