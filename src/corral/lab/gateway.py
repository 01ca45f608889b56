"""Read the store of a lab cluster through etcd's JSON gateway, from the client namespace.

The lab's tools (``Lab.registrations``, the chaos checker) must see the store without asking
corral: they POST to ``/v3/kv/range`` of each core member in turn with ``curl`` run in the client
namespace (the root namespace has no route to the lab). One fork per read: meant for reads a
few times a second at most.

Contract of :func:`range_prefix`: the keys under ``prefix`` (relative to it) mapped to their
values decoded as JSON (a value that is not JSON maps to its text); None when no member gave a
well-formed answer (an etcd error answer counts as none and the next member is asked).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from corral.lab import netns


def range_body(prefix: bytes) -> str:
    """The ``/v3/kv/range`` request body for every key under ``prefix`` (pure)."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return json.dumps(
        {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}
    )


def decode_range(answer_text: str, prefix: bytes) -> dict[str, Any] | None:
    """The keys of a ``/v3/kv/range`` answer (pure); None for an error or garbled answer."""
    try:
        answer = json.loads(answer_text)
        if "header" not in answer:
            return None
        out: dict[str, Any] = {}
        for kv in answer.get("kvs", []):  # etcd leaves out empty fields
            raw = base64.b64decode(kv.get("value", ""))
            try:
                value: Any = json.loads(raw)
            except ValueError:
                value = raw.decode(errors="replace")
            out[base64.b64decode(kv["key"])[len(prefix) :].decode()] = value
        return out
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def curl_tls(files: Sequence[str]) -> list[str]:
    """curl's options presenting ``(ca, cert, key)`` (empty: plain http)."""
    if not files:
        return []
    ca, cert, key = files
    return ["--cacert", ca, "--cert", cert, "--key", key]


def range_prefix(
    client_ns: str,
    endpoints: Sequence[str],
    prefix: bytes,
    timeout: float = 1.0,
    tls: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Every key under ``prefix``, asked of ``endpoints`` (``http(s)://addr:port``) in turn;
    ``tls``: the ``(ca, cert, key)`` files presented to a TLS store."""
    body = range_body(prefix)
    for endpoint in endpoints:
        argv = ["curl", "-s", "-m", f"{timeout:g}", *curl_tls(tls), "-X", "POST"]
        argv.append(f"{endpoint}/v3/kv/range")
        out = netns.run(netns.exec_argv(client_ns, [*argv, "-d", body]), check=False)
        found = decode_range(out, prefix)
        if found is not None:
            return found
    return None


def put(
    client_ns: str,
    endpoints: Sequence[str],
    key: bytes,
    value: Any,
    timeout: float = 1.0,
    tls: Sequence[str] = (),
) -> bool:
    """Write ``value`` (as JSON) at ``key`` through the first member that accepts it."""
    body = json.dumps(
        {
            "key": base64.b64encode(key).decode(),
            "value": base64.b64encode(json.dumps(value).encode()).decode(),
        }
    )
    for endpoint in endpoints:
        argv = ["curl", "-s", "-m", f"{timeout:g}", *curl_tls(tls), "-X", "POST"]
        argv.append(f"{endpoint}/v3/kv/put")
        out = netns.run(netns.exec_argv(client_ns, [*argv, "-d", body]), check=False)
        try:
            if "header" in json.loads(out):
                return True
        except ValueError:
            continue
    return False
