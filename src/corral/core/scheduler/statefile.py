"""The state file: a cluster snapshot written by hand (``corral simulate``, golden tests) or
dumped from the store. Parsed with the same positioned errors as the spec.

Format (every section optional; nodes not listed are online)::

    now: 1000                       # seconds, the clock of failure timestamps
    quorum: true
    nodes:
      ctl2: unclean                 # online | unclean | offline
      ctl3: {standby: true}         # or {state:, standby:, maintenance:, fenced:}
    instances:                      # what agents report: RESOURCE[ITEM]@NODE
      keystone@ctl1: started        # started | promoted | unhealthy | unknown
      galera@ctl1: {role: promoted, score: 12}
      api-vips[198.18.0.100]@ctl1: started
    failures: {cinder-volume@ctl2: {count: 3, last: 990}}
    maintenance: {cluster: false, nodes: [], resources: [], instances: [galera@ctl3]}
    bans: [cinder-volume@ctl1]
    moves: {cinder-volume: ctl3}
    tickets: {db: dc1}              # ticket -> site that holds it
    wait_for_all: [galera]          # promotable resources whose driver waits for all scores
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corral.core.ref import InstanceRef
from corral.core.scheduler.model import (
    FailCount,
    Instance,
    Maintenance,
    NodeStatus,
    Snapshot,
)
from corral.spec import Spec, SpecError
from corral.spec.loader import issue_at, pydantic_issues, yaml_issue
from corral.spec.yamlpos import Path, YamlProblem, load_yaml


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # now: 1.0e+400 is no time


class _Node(_M):
    state: Literal["online", "unclean", "offline"] = "online"
    standby: bool = False
    maintenance: bool = False
    fenced: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        return {"state": data} if isinstance(data, str) else data


class _Inst(_M):
    role: Literal["started", "promoted"] = "started"
    health: Literal["healthy", "unhealthy", "unknown"] = "healthy"
    score: int | None = None
    count: int = Field(default=1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if data in ("started", "promoted"):
            return {"role": data}
        if data in ("unhealthy", "unknown", "healthy"):
            return {"health": data}
        return data


class _Fail(_M):
    count: int = Field(ge=0)
    last: float = 0.0


class _Maint(_M):
    cluster: bool = False
    nodes: list[str] = []
    resources: list[str] = []
    instances: list[str] = []


class _State(_M):
    now: float = 0.0
    quorum: bool = True
    nodes: dict[str, _Node] = {}
    instances: dict[str, _Inst] = {}
    failures: dict[str, _Fail] = {}
    maintenance: _Maint = _Maint()
    bans: list[str] = []
    moves: dict[str, str] = {}
    tickets: dict[str, str] = {}
    wait_for_all: list[str] = []


def load_state_text(text: str | bytes, spec: Spec, file: str = "<state>") -> Snapshot:
    """Parse a state file against ``spec``; raise :class:`SpecError` naming every problem."""
    try:
        raw, positions = load_yaml(text) if text.strip() else ({}, None)
    except YamlProblem as exc:
        raise SpecError([yaml_issue(exc, file)]) from None
    try:
        state = _State.model_validate(raw)
    except ValidationError as exc:
        assert positions is not None
        raise SpecError(pydantic_issues(exc, raw, positions, file)) from None
    problems: list[tuple[Path, str]] = []
    snap = _convert(state, spec, problems)
    if problems:
        assert positions is not None
        raise SpecError([issue_at(path, msg, positions, file) for path, msg in problems])
    return snap


def _convert(state: _State, spec: Spec, problems: list[tuple[Path, str]]) -> Snapshot:
    names = _Names(spec, problems)
    nodes = {
        name: NodeStatus(n.state, n.standby, n.maintenance, n.fenced)
        for name, n in state.nodes.items()
        if names.node(name, ("nodes", name))
    }
    instances = [
        Instance(p[0], p[2], inst.role, inst.health, p[1], inst.score, inst.count)
        for key, inst in state.instances.items()
        if (p := names.pair(key, ("instances", key)))
    ]
    failures = {
        (p[0], p[2]): FailCount(fail.count, fail.last)
        for key, fail in state.failures.items()
        if (p := names.pair(key, ("failures", key)))
    }
    bans = [names.pair(k, ("bans", i)) for i, k in enumerate(state.bans)]
    for res, node in state.moves.items():
        if names.resource(res, ("moves", res)):
            names.node(node, ("moves", res))
    for i, res in enumerate(state.wait_for_all):
        names.resource(res, ("wait_for_all", i))
    return Snapshot(
        now=state.now,
        quorum=state.quorum,
        nodes=nodes,
        instances=tuple(instances),
        failures=failures,
        maintenance=_maintenance(state.maintenance, names),
        bans=frozenset((p[0], p[2]) for p in bans if p),
        moves=dict(state.moves),
        tickets=dict(state.tickets),
        wait_for_all=frozenset(state.wait_for_all),
    )


def _maintenance(m: _Maint, names: _Names) -> Maintenance:
    pairs = [names.pair(k, ("maintenance", "instances", i)) for i, k in enumerate(m.instances)]
    return Maintenance(
        m.cluster,
        frozenset(n for i, n in enumerate(m.nodes) if names.node(n, ("maintenance", "nodes", i))),
        frozenset(
            r
            for i, r in enumerate(m.resources)
            if names.resource(r, ("maintenance", "resources", i))
        ),
        frozenset((p[0], p[2]) for p in pairs if p),
    )


class _Names:
    """Checks the names a state file uses against the spec; each unknown one is a problem
    (with its path in the file)."""

    def __init__(self, spec: Spec, problems: list[tuple[Path, str]]) -> None:
        self.spec, self.problems = spec, problems

    def node(self, name: str, path: Path) -> bool:
        if name not in self.spec.nodes:
            self.problems.append((path, f"unknown node {name!r}"))
            return False
        return True

    def resource(self, name: str, path: Path) -> bool:
        if name not in self.spec.resources:
            self.problems.append((path, f"unknown resource {name!r}"))
            return False
        return True

    def pair(self, key: str, path: Path) -> tuple[str, str | None, str] | None:
        """``RESOURCE@NODE`` or ``RESOURCE[ITEM]@NODE`` -> (resource, item, node)."""
        ref = InstanceRef.parse(key)
        if ref is None or ref.node is None:
            self.problems.append((path, f"{key!r}: write RESOURCE@NODE or RESOURCE[ITEM]@NODE"))
            return None
        if self.resource(ref.resource, path) and self.node(ref.node, path):
            return ref.resource, ref.item, ref.node
        return None


def dump_state_text(snap: Snapshot, header: str = "") -> str:
    """``snap`` as a state file that :func:`load_state_text` reads back to an equal snapshot
    (what a node's ``fence_failed``/``fencing`` says is the controller's memory, not state,
    and is left out). ``header``: comment lines put first."""
    import yaml

    doc = state_document(snap)
    lines = [f"# {line}" for line in header.splitlines()]
    return "\n".join([*lines, yaml.safe_dump(doc, sort_keys=False, width=100)])


def state_document(snap: Snapshot) -> dict[str, Any]:
    """The state file's content for ``snap``: defaults left out, everything sorted."""
    doc: dict[str, Any] = {"now": snap.now, "quorum": snap.quorum}
    nodes = {n: _node_doc(s) for n, s in sorted(snap.nodes.items()) if _node_doc(s) != "online"}
    instances = {i.key: _instance_doc(i) for i in sorted(snap.instances, key=lambda i: i.key)}
    m = snap.maintenance
    sections: dict[str, Any] = {
        "nodes": nodes,
        "instances": instances,
        "failures": {
            f"{res}@{node}": {"count": f.count, "last": f.last}
            for (res, node), f in sorted(snap.failures.items())
        },
        "maintenance": {
            k: v
            for k, v in (
                ("cluster", m.cluster),
                ("nodes", sorted(m.nodes)),
                ("resources", sorted(m.resources)),
                ("instances", sorted(f"{r}@{n}" for r, n in m.instances)),
            )
            if v
        },
        "bans": sorted(f"{r}@{n}" for r, n in snap.bans),
        "moves": dict(sorted(snap.moves.items())),
        "tickets": dict(sorted(snap.tickets.items())),
        "wait_for_all": sorted(snap.wait_for_all),
    }
    doc.update({k: v for k, v in sections.items() if v})
    return doc


def _node_doc(s: NodeStatus) -> str | dict[str, Any]:
    extra = {k: True for k in ("standby", "maintenance", "fenced") if getattr(s, k)}
    return {"state": s.state, **extra} if extra else s.state


def _instance_doc(i: Instance) -> str | dict[str, Any]:
    doc: dict[str, Any] = {}
    if i.role != "started":
        doc["role"] = i.role
    if i.health != "healthy":
        doc["health"] = i.health
    if i.score is not None:
        doc["score"] = i.score
    if i.count != 1:
        doc["count"] = i.count
    if not doc:
        return "started"
    return next(iter(doc.values())) if list(doc) in (["role"], ["health"]) else doc
