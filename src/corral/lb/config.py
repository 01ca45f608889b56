"""HAProxy configuration from the spec: pure rendering, same input -> same bytes.

Contract of :func:`render`:

- **Frontends.** One per *balanced* service (a resource with ``balance:``), named after the
  service, binding ``VIP:port`` for *every* address of the ``via`` vip / vip-set, on every LB
  node. An HAProxy therefore already listens when a VIP moves to its node: moving a VIP is an
  address change only, never a configuration change or a reload.
- **Non-local bind: the ``transparent`` bind keyword** (``IP_TRANSPARENT``), not the sysctl
  ``net.ipv4.ip_nonlocal_bind=1``. The keyword lets this one listener bind an address the node
  does not hold (yet) and needs nothing outside the file we render; the sysctl is a host-wide
  switch (per network namespace) that corral would have to set and keep set behind the
  operator's back, and that silently changes every other program's bind behaviour. The cost:
  HAProxy needs ``CAP_NET_ADMIN`` when it binds, which it has (the master runs as root and
  binds before any privilege drop, also at reloads). Once the VIP is on an interface the
  kernel delivers its traffic to the listener like any local address.
- **Backends.** One per balanced service, one server per node of the service's *static*
  placement (``Context(spec, Snapshot()).static_set``), at the node's address and
  ``balance.backend_port or balance.port``. A caller may pass other servers for a service in
  ``servers`` (the agent's current view, tests); a service missing from ``servers`` gets the
  static set. Servers are sorted by name, services by name: output never depends on dict order.
- **Health checks** come from the service's own checks: the first ``http`` check gives
  ``option httpchk`` with its method, path and expected statuses; else the first ``tcp`` check
  gives a layer-4 check on its port; ``exec`` checks cannot run inside HAProxy, so such a
  service (or one without checks) gets a layer-4 connect check on the server port. The body
  substring of an http check is not carried over (HAProxy would need a second expect rule).
- **global** holds the admin stats socket (``expose-fd listeners``, so a reload hands the
  listening sockets to the new worker instead of closing and re-binding them: no refused
  connection during a reload), the server-state file (a reload keeps maint/drain and check
  states, the caller saves ``show servers state`` there first), the pid file, and logs to
  stderr at level notice (server state changes, not every request).
- A stats/health frontend on ``node.address:stats_port`` answers ``/health`` (``monitor-uri``)
  for corral's own check of the haproxy resource, and ``/stats``.

Names (services, nodes) end up as HAProxy identifiers; a name HAProxy would not accept raises
:class:`ValueError`, as does a run directory whose socket paths exceed the unix socket limit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from corral.core.node import NodeContext
from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.spec.model import HealthCheck, Resource, Spec

SOCKET = "haproxy.sock"
MASTER_SOCKET = "master.sock"
STATE_FILE = "haproxy.state"
PID_FILE = "haproxy.pid"
CONFIG_FILE = "haproxy.cfg"
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the trailing NUL

# HAProxy's identifier characters (proxy and server names).
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
# Methods RFC 9110 calls idempotent: only these may be replayed after reaching a server.
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")

# Timing of the data path (seconds). Short connect timeout: a backend whose node vanished
# (no RST, packets dropped) costs one connect timeout before the retry goes elsewhere.
CONNECT_TIMEOUT = 1.0
CLIENT_TIMEOUT = 60.0
SERVER_TIMEOUT = 60.0
RETRIES = 3
# Old workers left by a reload (holding long connections) are killed after this.
HARD_STOP_AFTER = 30.0


@dataclass(frozen=True, order=True)
class Server:
    """One backend server: ``name`` (the node's name), ``address``, ``port``."""

    name: str
    address: str
    port: int


@dataclass(frozen=True)
class Check:
    """HAProxy's health check of a backend's servers (derived from the service's checks).

    ``kind`` "http" sends ``method path`` and expects one of ``statuses``; "tcp" only
    connects. ``port`` is the checked port when it differs from the server's (None: same).
    """

    kind: Literal["http", "tcp"]
    interval: float
    timeout: float
    rise: int
    fall: int
    port: int | None = None
    method: str = "GET"
    path: str = "/"
    statuses: tuple[int, ...] = (200,)
    host: str | None = None  # a literal Host header; None when the URL's host is a template
    ssl: bool = False


@dataclass(frozen=True)
class Backend:
    """A balanced service as HAProxy sees it: its frontend binds and its servers."""

    name: str
    mode: Literal["http", "tcp"]
    port: int
    binds: tuple[str, ...]
    servers: tuple[Server, ...]
    check: Check


def _checked(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"{what} {name!r} cannot be an HAProxy name (letters, digits, -_.:)")
    return name


def _duration(seconds: float) -> str:
    """HAProxy's time format, in whole milliseconds (``1500ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


def hostport(address: str, port: int) -> str:
    """``addr:port`` as HAProxy reads it (IPv6 with the ``ipv6@`` prefix)."""
    ip = ipaddress.ip_address(address)
    return f"ipv6@{ip}:{port}" if ip.version == 6 else f"{ip}:{port}"


def derive_check(res: Resource, server_port: int) -> Check:
    """The HAProxy check for a service (see the module contract for the choice)."""
    http = next((c for c in res.health if c.http is not None), None)
    tcp = next((c for c in res.health if c.tcp is not None), None)
    source: HealthCheck | None = http or tcp or (res.health[0] if res.health else None)
    timing = (
        (source.interval, source.timeout, source.rise, source.fall) if source else (1.0, 0.5, 2, 2)
    )
    if http is not None and http.http is not None:
        url = urlsplit(http.http.url)
        url_port = url.port or (443 if url.scheme == "https" else 80)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        host = url.hostname if url.hostname and "{" not in http.http.url.split("/")[2] else None
        return Check(
            "http",
            *timing,
            port=None if url_port == server_port else url_port,
            method=http.http.method,
            path=path,
            statuses=tuple(http.http.status),
            host=host,
            ssl=url.scheme == "https",
        )
    port: int | None = None
    if tcp is not None and tcp.tcp is not None:
        tail = tcp.tcp.rsplit(":", 1)[-1]
        port = int(tail) if tail.isdigit() and int(tail) != server_port else None
    return Check("tcp", *timing, port=port)


def static_servers(spec: Spec, name: str) -> tuple[Server, ...]:
    """One server per node of service ``name``'s static placement, sorted by node name."""
    res = spec.resources[name]
    assert res.balance is not None
    port = res.balance.backend_port or res.balance.port
    nodes = Context(spec, Snapshot()).static_set(name)
    return tuple(
        Server(_checked(n, "node name"), str(spec.nodes[n].address), port) for n in sorted(nodes)
    )


def backends(spec: Spec, servers: Mapping[str, Sequence[Server]] | None = None) -> list[Backend]:
    """Every balanced service of ``spec`` as a :class:`Backend`, sorted by name.

    ``servers`` replaces the static server set of the services it names. A ``via`` that is
    not a vip / vip-set raises ValueError (the spec checks refuse such specs already).
    """
    out: list[Backend] = []
    for name in sorted(spec.resources):
        res = spec.resources[name]
        if res.balance is None:
            continue
        _checked(name, "service name")
        via = spec.resources.get(res.balance.via)
        if via is not None and via.vip is not None:
            addresses = [via.vip.address.ip]
        elif via is not None and via.vip_set is not None:
            addresses = [a.ip for a in via.vip_set.addresses]
        else:
            raise ValueError(f"{name}: balance.via {res.balance.via!r} is not a vip or vip-set")
        chosen = servers.get(name) if servers is not None else None
        members = tuple(sorted(chosen)) if chosen is not None else static_servers(spec, name)
        for server in members:
            _checked(server.name, "server name")
        backend_port = res.balance.backend_port or res.balance.port
        out.append(
            Backend(
                name=name,
                mode=res.balance.mode,
                port=res.balance.port,
                binds=tuple(hostport(str(a), res.balance.port) for a in addresses),
                servers=members,
                check=derive_check(res, backend_port),
            )
        )
    return out


def server_params(check: Check) -> str:
    """The keywords after ``server NAME ADDR:PORT``: the same for the file and ``add server``.

    ``observe layer4`` + ``on-error fastinter``: a connection error seen by live traffic makes
    HAProxy re-check that server at once (``fastinter``) instead of waiting ``inter``, so a
    crashed backend leaves rotation in about ``fall`` fast checks; retries cover the gap.
    """
    fast = max(0.1, check.interval / 4)
    params = [
        "check",
        f"inter {_duration(check.interval)}",
        f"fastinter {_duration(fast)}",
        f"downinter {_duration(check.interval)}",
        f"rise {check.rise}",
        f"fall {check.fall}",
        "observe layer4",
        "error-limit 1",
        "on-error fastinter",
    ]
    if check.port is not None:
        params.append(f"port {check.port}")
    if check.ssl:
        params.append("check-ssl verify none")  # a health probe, not a data path
    return " ".join(params)


def _check_lines(check: Check) -> list[str]:
    if check.kind == "tcp":
        return ["    # layer-4 check: a connect that succeeds is healthy"]
    send = f"    http-check send meth {check.method} uri {check.path}"
    if check.host is not None:
        send += f" ver HTTP/1.1 hdr Host {check.host}"
    # Without a literal host (the URL is a {node.address} template, one per server) there is
    # no single Host header to send: HTTP/1.0 needs none.
    if len(check.statuses) == 1:
        expect = f"    http-check expect status {check.statuses[0]}"
    else:
        codes = "|".join(str(s) for s in check.statuses)
        expect = f"    http-check expect rstatus ^({codes})$"
    return ["    option httpchk", send, expect]


def _global(spec: Spec, run_dir: Path) -> list[str]:
    maxconn = max(
        (r.haproxy.maxconn for r in spec.resources.values() if r.haproxy is not None),
        default=4096,
    )
    return [
        f"# rendered by corral for cluster {spec.cluster}; do not edit (corral rewrites it)",
        "global",
        f"    maxconn {maxconn}",
        f"    stats socket {run_dir / SOCKET} mode 600 level admin expose-fd listeners",
        f"    server-state-file {run_dir / STATE_FILE}",
        f"    pidfile {run_dir / PID_FILE}",
        f"    hard-stop-after {_duration(HARD_STOP_AFTER)}",
        "    log stderr format iso local0 notice",
        "",
        "defaults",
        "    log global",
        "    # keep maint/drain/check states across reloads (corral saves them first)",
        "    load-server-state-from-file global",
        f"    timeout connect {_duration(CONNECT_TIMEOUT)}",
        f"    timeout client {_duration(CLIENT_TIMEOUT)}",
        f"    timeout server {_duration(SERVER_TIMEOUT)}",
        "    timeout http-request 10s",
        "    timeout queue 5s",
        "",
    ]


def _stats(spec: Spec, node: NodeContext) -> list[str]:
    port = next((r.haproxy.stats_port for r in spec.resources.values() if r.haproxy), 8404)
    return [
        "frontend stats",
        "    mode http",
        f"    bind {hostport(node.address, port)}",
        "    # 200 while this HAProxy accepts connections: corral's check of the haproxy resource",
        "    monitor-uri /health",
        "    stats enable",
        "    stats uri /stats",
        "",
    ]


def _frontend(b: Backend) -> list[str]:
    lines = [f"frontend {b.name}", f"    mode {b.mode}"]
    lines += [f"    bind {addr} transparent" for addr in b.binds]
    if b.mode == "http":
        lines.append("    option httplog")
    lines += [f"    default_backend {b.name}", ""]
    return lines


def _backend(b: Backend) -> list[str]:
    lines = [
        f"backend {b.name}",
        f"    mode {b.mode}",
        "    balance roundrobin  # dynamic: supports weights and add/del server at run time",
        f"    timeout check {_duration(b.check.timeout)}",
        *_check_lines(b.check),
        f"    # a refused or failed connection is tried again, up to {RETRIES} times ...",
        f"    retries {RETRIES}",
        "    # ... each time on another server: without redispatch the retries hit the dead one",
        "    option redispatch 1",
    ]
    if b.mode == "http":
        methods = " ".join(IDEMPOTENT_METHODS)
        lines += [
            "    # a request whose server died before answering (reset or closed mid-request,",
            "    # garbage) is replayed elsewhere: the client never sees the crash ...",
            "    retry-on conn-failure empty-response junk-response",
            "    # ... but only an idempotent one: a POST may have taken effect already",
            f"    http-request disable-l7-retry unless {{ method {methods} }}",
        ]
    params = server_params(b.check)
    lines += [f"    server {s.name} {hostport(s.address, s.port)} {params}" for s in b.servers]
    lines.append("")
    return lines


def render(
    spec: Spec,
    node: NodeContext,
    servers: Mapping[str, Sequence[Server]],
    run_dir: Path,
) -> str:
    """The whole HAProxy configuration of ``node`` (see the module contract)."""
    for name in (SOCKET, MASTER_SOCKET):
        if len(str(run_dir / name)) > UNIX_PATH_MAX:
            raise ValueError(f"{run_dir / name} is longer than a unix socket path may be")
    lines = _global(spec, run_dir) + _stats(spec, node)
    for b in backends(spec, servers):
        lines += _frontend(b) + _backend(b)
    return "\n".join(lines).rstrip("\n") + "\n"


def structure(text: str) -> list[str]:
    """The lines of a configuration that matter to HAProxy (comments, blanks, indent gone).

    Two configurations with equal structure behave the same; anything else needs a reload.
    """
    out = []
    for line in text.splitlines():
        # '#' starts a comment unless escaped or quoted; corral's own files never quote one.
        kept = line.split("#", 1)[0].strip() if "\\#" not in line else line.strip()
        if kept:
            out.append(" ".join(kept.split()))
    return out
