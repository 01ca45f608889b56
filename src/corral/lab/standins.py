"""The lab's spec rewrite: every service a spec names becomes a stand-in that runs here.

Pure: spec text in, spec text out (plus the decisions taken); no file is read or written.

Contract of :func:`rewrite` (the input must be a valid spec; the output is validated again):
- **Nodes**: the first ``nodes`` of the spec are kept (default all); ``prefer`` and ``on.nodes``
  entries naming dropped nodes are removed. When that leaves an even number of core nodes, the
  last kept one becomes ``kind: remote`` (an even etcd membership is refused by validation).
- **Services**: every ``systemd`` and ``ocf`` resource (and stateful kinds not run for real)
  becomes a ``process`` running the stand-in
  HTTP app (:mod:`corral.lab.app`) on the resource's port: ``balance.backend_port``, else
  ``balance.port``, else the port of its first http or tcp check, else one allocated from
  :data:`PORT_BASE` upwards (exec checks name no port). Its health becomes one http check on
  that port, with the timing keys the first original check wrote (the rest still come from
  ``defaults``). Resources that had no check get one too, so every stand-in is checked.
- **Stateful kinds** (``galera:``, ``rabbitmq:``): those named in ``real`` run the real
  server, rewritten by :func:`corral.lab.servers.real_body` (per-node ``base_dir``, lab
  secrets); the others become active-active stand-ins like a systemd service, on the kind's
  port (galera: the balanced port, else ``port``; rabbitmq: ``amqp_port``).
- **Promotable OCF resources**: ``ocf: pacemaker:Stateful`` (promotable, checked by
  the agent's own monitor, no port) when ``stateful`` says that agent is installed. Otherwise
  a documented simplification: an active-active stand-in (``promoted`` dropped). For galera's
  ``promoted: N`` on N nodes (multi-master) clients see the same thing; promote/demote and
  bootstrap order are not exercised by the lab then.
- **Process resources** are kept as they are (they run here already); vip, vip-set and haproxy
  resources are kept untouched: the lab provides the network only.
- **Fencing**: every fence device is replaced by one device ``lab`` running ``fence_command``
  (the lab fence agent, :mod:`corral.lab.fence`) with ``lab_dir`` (the fence driver sends
  ``plug=<node name>`` itself) and the ``action`` asked for (default: that of the spec's
  first device); node ``fence:`` lists name ``lab``. ``off`` keeps a fenced node off until
  the test powers it on; ``none`` leaves the lab spec without fencing (tests of the lab
  itself, where the cluster must not power nodes on and off behind the test's back).
- **Store**: ``embedded`` on the spec's ports (2379/2380 by default: every node namespace has
  its own port space) with ``data_dir`` under the lab dir; profile ``lan``.
- The stand-in's mode file (``ok`` / ``500``) is :func:`corral.lab.modes.mode_file`; the app answers
  ``<mode> <node address>`` so a client can tell which node served it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from corral.lab.modes import mode_dir
from corral.lab.servers import KINDS, real_body
from corral.spec import Spec, load_spec_text
from corral.spec.model import Resource
from corral.spec.yamlpos import load_yaml

PORT_BASE = 18000
TIMING_KEYS = ("interval", "timeout", "rise", "fall", "grace")
FENCE_DEVICE = "lab"


@dataclass(frozen=True)
class StandinOptions:
    """What the rewrite needs to know about this machine (passed in: the rewrite is pure)."""

    lab_dir: Path
    python: str  # interpreter that runs the app
    app: str  # path of corral/lab/app.py
    fence_command: str  # executable speaking the fence-agents stdin protocol
    nodes: int | None = None  # keep the first N nodes (None: all)
    stateful: bool = False  # /usr/lib/ocf/resource.d/pacemaker/Stateful exists
    fence_action: str | None = None  # off | reboot | none; None: the spec's device's action
    real: frozenset[str] = frozenset()  # stateful kinds that run the real server (lab.servers)
    run_as_root: bool = False  # galera's OS user cannot reach the lab dir: mariadbd as root


@dataclass(frozen=True)
class Rewritten:
    text: str
    ports: dict[str, int] = field(default_factory=dict)  # stand-in resource -> its port
    notes: list[str] = field(default_factory=list)  # one line per simplification


def rewrite(text: str, opts: StandinOptions, source: str = "<spec>") -> Rewritten:
    """The lab version of spec ``text`` (see the module docstring). Raises SpecError when the
    input (or, through a bug here, the result) does not validate, ValueError for a ``nodes``
    count the spec cannot give."""
    spec = load_spec_text(text, source)
    raw, _ = load_yaml(text)
    notes: list[str] = []
    kept = _keep_nodes(spec, raw, opts.nodes, notes)
    ports: dict[str, int] = {}
    taken = {p for r in spec.resources.values() if (p := _declared_port(r)) is not None}
    next_port = PORT_BASE
    for name, res in spec.resources.items():
        body = raw["resources"][name]
        _drop_node_refs(body, kept)
        if res.kind in opts.real:
            notes += real_body(name, body, res.kind, opts.lab_dir, opts.run_as_root)
            continue
        if res.kind not in ("systemd", "ocf", *KINDS):
            continue
        if res.mode == "promotable" and opts.stateful and res.kind not in KINDS:
            _to_stateful(body)
            notes.append(f"{name}: promotable, runs pacemaker:Stateful")
            continue
        port = _declared_port(res)
        if port is None:
            while next_port in taken:
                next_port += 1
            port, next_port = next_port, next_port + 1
            taken.add(port)
            notes.append(f"{name}: no port in the spec; the stand-in listens on {port}")
        ports[name] = port
        _to_process(name, body, port, _check_path(res), opts)
        if res.mode == "promotable":
            body.pop("mode", None)
            body.pop("promoted", None)
            why = "a stand-in" if res.kind in KINDS else "no pacemaker:Stateful here"
            notes.append(f"{name}: promotable, {why}: an active-active stand-in")
    _fencing(spec, raw, opts)
    embedded = spec.store.embedded
    raw["store"] = {
        "embedded": {
            "client_port": embedded.client_port if embedded else 2379,
            "peer_port": embedded.peer_port if embedded else 2380,
            "data_dir": str(opts.lab_dir / "etcd"),
        }
    }
    raw["profile"] = "lan"
    header = f"# lab version of {source}, written by corral lab (stand-ins, lab fence device)\n"
    out = header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=False, width=120)
    load_spec_text(out, f"{source} (lab rewrite)")  # a bug here must not reach the agents
    return Rewritten(out, ports, notes)


def _fencing(spec: Spec, raw: dict[str, Any], opts: StandinOptions) -> None:
    devices = list(spec.fencing.values())
    action = opts.fence_action or (devices[0].action if devices else "reboot")
    if action not in ("off", "reboot", "none"):
        raise ValueError(f"fence action {action!r}: use off, reboot or none")
    raw["fencing"] = {}
    if action != "none":
        raw["fencing"][FENCE_DEVICE] = {
            "agent": opts.fence_command,
            "params": {"lab_dir": str(opts.lab_dir)},  # the caller sends plug=<node>
            "action": action,
        }
    for node in raw["nodes"].values():
        if isinstance(node, dict) and "fence" in node:
            node["fence"] = [FENCE_DEVICE] if action != "none" else []


def _keep_nodes(spec: Spec, raw: dict[str, Any], count: int | None, notes: list[str]) -> set[str]:
    names = list(spec.nodes)
    if count is not None:
        if not 1 <= count <= len(names):
            raise ValueError(f"--nodes {count}: the spec has {len(names)} node(s)")
        names = names[:count]
    raw["nodes"] = {n: raw["nodes"][n] for n in names}
    core = [n for n in names if spec.nodes[n].kind == "core"]
    if len(core) > 1 and len(core) % 2 == 0:
        last = core[-1]
        node = raw["nodes"][last]
        if isinstance(node, dict):
            node["kind"] = "remote"
            notes.append(f"{last}: remote (an even number of etcd members is refused)")
    return set(names)


def _drop_node_refs(body: dict[str, Any], kept: set[str]) -> None:
    prefer = body.get("prefer")
    if isinstance(prefer, dict):
        body["prefer"] = {n: s for n, s in prefer.items() if n in kept}
    on = body.get("on")
    if isinstance(on, dict) and isinstance(on.get("nodes"), list):
        on["nodes"] = [n for n in on["nodes"] if n in kept]


def _declared_port(res: Resource) -> int | None:
    """The port a service listens on, as far as the spec says."""
    if res.balance is not None:
        return res.balance.backend_port or res.balance.port
    if res.galera is not None:
        return res.galera.port
    if res.rabbitmq is not None:
        return res.rabbitmq.amqp_port
    for check in res.health:
        if check.http is not None:
            url = check.http.url.replace("{node.address}", "host").replace("{node.name}", "host")
            try:
                parts = urlsplit(url)
                return parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                continue
        if check.tcp is not None:
            tail = check.tcp.rsplit(":", 1)[-1]
            if tail.isdigit():
                return int(tail)
    return None


def _first_check(body: dict[str, Any]) -> dict[str, Any]:
    health = body.get("health")
    first = health[0] if isinstance(health, list) and health else health
    return first if isinstance(first, dict) else {}


def _check_path(res: Resource) -> str:
    """The path of the first http check (kept: the stand-in answers every path)."""
    for check in res.health:
        if check.http is not None:
            return urlsplit(check.http.url.replace("{node.address}", "h")).path or "/"
    return "/"


def _to_process(
    name: str, body: dict[str, Any], port: int, path: str, opts: StandinOptions
) -> None:
    first = _first_check(body)
    timing = {k: first[k] for k in TIMING_KEYS if k in first}
    for kind in ("systemd", "ocf", *KINDS):
        body.pop(kind, None)
    mode = shlex.quote(str(mode_dir(opts.lab_dir) / f"{name}@{{node.name}}.mode"))
    command = (
        f"exec {shlex.quote(opts.python)} {shlex.quote(opts.app)} {{node.address}} {port} {mode}"
    )
    body["process"] = {"command": command, "stop_timeout": "2s"}
    body["health"] = {"http": f"http://{{node.address}}:{port}{path}", **timing}
    _first_key(body, "process")


def _to_stateful(body: dict[str, Any]) -> None:
    for kind in ("systemd", "ocf"):
        body.pop(kind, None)
    body["ocf"] = {"agent": "pacemaker:Stateful", "monitor_interval": "2s"}
    body.pop("health", None)  # Stateful has no port; the OCF monitor is its check
    _first_key(body, "ocf")


def _first_key(body: dict[str, Any], key: str) -> None:
    """Put ``key`` first so the rewritten resource reads like a hand-written one."""
    value = body.pop(key)
    rest = dict(body)
    body.clear()
    body[key] = value
    body.update(rest)
