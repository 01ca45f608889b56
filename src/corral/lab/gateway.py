"""Read the store of a lab cluster from the client namespace, without asking corral.

The lab's tools (``Lab.registrations``, the chaos checker) must see the store on their own:
they ask each core member in turn from the client namespace (the root namespace has no route
to the lab), one fork per read (meant for reads a few times a second at most). A plain store:
``curl`` POSTs to etcd's JSON gateway (``/v3/kv/range``). A TLS store: ``etcdctl`` over gRPC
presenting the given certificate, because etcd 3.5's gateway answers HTTP 400 to a client
certificate with a CN once auth is on (and a certificate without one is no etcd user);
``etcdctl -w json`` answers in the gateway's JSON, so one decoder reads both.

Contract of :func:`range_prefix`: the keys under ``prefix`` (relative to it) mapped to their
values decoded as JSON (a value that is not JSON maps to its text); None when no member gave a
well-formed answer (an etcd error answer counts as none and the next member is asked).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
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
    """curl's options presenting ``(ca, cert, key)`` (empty: plain http), for what etcd serves
    without auth (``/metrics``, ``/health``)."""
    if not files:
        return []
    ca, cert, key = files
    return ["--cacert", ca, "--cert", cert, "--key", key]


def etcdctl() -> str:
    """The etcdctl beside the etcd binary corral runs (:func:`corral.store.find_etcd`)."""
    from corral.store import find_etcd  # here: the lab's fence agent imports this module

    found = Path(find_etcd()).with_name("etcdctl")
    return str(found) if found.is_file() else (shutil.which("etcdctl") or "etcdctl")


def ask_argv(endpoint: str, timeout: float, tls: Sequence[str], op: str, *args: str) -> list[str]:
    """The command line of one request (``op``: ``range`` or ``put``) to ``endpoint``: curl
    to the gateway without ``tls``, else etcdctl presenting ``(ca, cert, key)``; ``args``: the
    gateway's JSON body, or etcdctl's arguments."""
    if not tls:
        return ["curl", "-s", "-m", f"{timeout:g}", "-X", "POST", f"{endpoint}/v3/kv/{op}",
                "-d", *args]  # fmt: skip
    command = {"range": ["get", "--prefix"], "put": ["put"]}[op]
    return [*etcdctl_argv(endpoint, timeout, tls), "-w", "json", *command, "--", *args]


def etcdctl_argv(endpoints: str, timeout: float, tls: Sequence[str]) -> list[str]:
    """etcdctl on ``endpoints`` (comma-separated) presenting ``(ca, cert, key)``, each try
    bounded by ``timeout``; the command follows."""
    ca, cert, key = tls
    return [etcdctl(), "--endpoints", endpoints, "--cacert", ca, "--cert", cert, "--key", key,
            "--dial-timeout", f"{timeout:g}s", "--command-timeout", f"{timeout:g}s"]  # fmt: skip


def range_prefix(
    client_ns: str,
    endpoints: Sequence[str],
    prefix: bytes,
    timeout: float = 1.0,
    tls: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Every key under ``prefix``, asked of ``endpoints`` (``http(s)://addr:port``) in turn;
    ``tls``: the ``(ca, cert, key)`` files presented to a TLS store."""
    args = [prefix.decode()] if tls else [range_body(prefix)]
    for endpoint in endpoints:
        argv = ask_argv(endpoint, timeout, tls, "range", *args)
        found = decode_range(netns.run(netns.exec_argv(client_ns, argv), check=False), prefix)
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
    text = json.dumps(value)
    body = {"key": key, "value": text.encode()}
    encoded = json.dumps({k: base64.b64encode(v).decode() for k, v in body.items()})
    args = [key.decode(), text] if tls else [encoded]
    for endpoint in endpoints:
        argv = ask_argv(endpoint, timeout, tls, "put", *args)
        out = netns.run(netns.exec_argv(client_ns, argv), check=False)
        try:
            if "header" in json.loads(out):
                return True
        except ValueError:
            continue
    return False
