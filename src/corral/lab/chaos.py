"""The chaos schedule: a seeded, pure list of fault and operator episodes for a lab run.

Pure: the caller passes a ``random.Random`` (seeded) and the cluster's names; nothing here
reads a clock, a file or the network. The same seed and inputs give the same schedule.

Contract of :func:`generate`:
- A schedule is a list of **episodes**, run one after the other. Each episode is a few
  **steps** at offsets (seconds) from the episode's start: the fault, then what heals it. After
  its last step an episode waits ``gap`` seconds (the runner also waits for the cluster to
  converge before the next episode starts).
- **Every fault is healed** inside its episode: power-off by power-on, link cut by heal,
  partition by heal, malfunction by ``ok``, agent kill by a restart (as systemd would), freeze by
  thaw. A service kill and an etcd member kill need no heal step (the agent restarts the
  service, its supervisor the member); ``cleanup`` and ``spec push`` and the rolling restart
  are one step; every other operator action is undone (maintenance off, move/ban clear,
  standby off).
- **Quorum**: episodes never overlap, so with three core nodes at most one node is faulted at a
  time, except in the ``double`` episodes whose purpose is to fault two nodes at once.
- **Minimum counts**: every kind of ``kinds`` appears at least ``min_per_kind`` times; more
  episodes of random kinds are added while the planned time (offsets plus gaps) stays within
  ``duration``. The mandatory episodes are kept even when they alone exceed ``duration``.
- **Bounded**: at most ``max_episodes`` episodes, every hold within the bounds of
  :data:`HOLDS`.

Targets: a step's ``node`` is a node name or ``holder:<resource>`` (the node that holds the
resource when the step runs, resolved by the runner from what it observes; the name of the
first node when nothing holds it). Operator steps carry the ``corral`` command line arguments
in ``args``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

FAULTS = (
    "power-off",
    "link-cut",
    "partition",
    "kill-service",
    "malfunction-500",
    "malfunction-hang",
    "agent-kill",
    "etcd-kill",
    "freeze",
    "double",
)
OPERATOR = (
    "maint-cluster",
    "maint-node",
    "maint-resource",
    "maint-instance",
    "move",
    "ban",
    "cleanup",
    "standby",
    "spec-push",
    "rolling-restart",
)
KINDS = FAULTS + OPERATOR
# (min, max) seconds a fault or an operator state is held before it is healed or undone
HOLDS: dict[str, tuple[float, float]] = {
    "power-off": (2.0, 6.0),
    "link-cut": (2.0, 6.0),
    "partition": (2.0, 6.0),
    "malfunction-500": (2.0, 5.0),
    "malfunction-hang": (2.0, 5.0),
    "agent-kill": (0.5, 4.0),
    "freeze": (1.0, 5.0),
    "double": (2.0, 5.0),
    "operator": (2.0, 5.0),
}
DOUBLE_PARTS = ("power-off", "link-cut", "freeze", "agent-kill", "partition")
# fault start and heal actions (``Lab`` method names) of the healable single-node faults
HEALS: dict[str, tuple[str, str]] = {
    "power-off": ("power_off", "power_on"),
    "link-cut": ("cut_link", "heal_link"),
    "partition": ("partition", "heal_partition"),
    "agent-kill": ("kill_agent", "power_on"),
    "freeze": ("freeze", "thaw"),
}


@dataclass(frozen=True)
class Step:
    """One action: ``action`` is a ``Lab`` method name (faults) or ``corral`` (operator, with
    ``args`` the command's arguments after ``corral``). ``heals``: this step ends a fault or
    undoes an operator state."""

    offset: float
    action: str
    node: str | None = None
    args: tuple[str, ...] = ()
    heals: bool = False

    def describe(self) -> str:
        target = f" {self.node}" if self.node else ""
        return f"{self.action}{target}{' ' + ' '.join(self.args) if self.args else ''}"


@dataclass(frozen=True)
class Episode:
    kind: str
    steps: tuple[Step, ...]
    gap: float
    nodes: tuple[str, ...] = field(default=())  # nodes it faults (empty: none, or operator)

    @property
    def length(self) -> float:
        return max((s.offset for s in self.steps), default=0.0) + self.gap


@dataclass(frozen=True)
class Cluster:
    """What the generator needs to know: core node names, the exclusive (active-passive)
    resources, the other process resources, one active-active resource to restart rolling."""

    nodes: tuple[str, ...]
    exclusive: tuple[str, ...]
    services: tuple[str, ...]
    rolling: str


def _hold(rng: random.Random, kind: str) -> float:
    low, high = HOLDS.get(kind, HOLDS["operator"])
    return round(rng.uniform(low, high), 2)


def _single(rng: random.Random, kind: str, node: str, at: float = 0.0) -> list[Step]:
    start, heal = HEALS[kind]
    return [Step(at, start, node), Step(round(at + _hold(rng, kind), 2), heal, node, heals=True)]


def _fault(rng: random.Random, kind: str, c: Cluster) -> tuple[list[Step], tuple[str, ...]]:
    """The steps of fault episode ``kind`` and the nodes it faults."""
    node = rng.choice([*c.nodes, *(f"holder:{r}" for r in c.exclusive)])
    if kind in HEALS:
        return _single(rng, kind, node), (node,)
    if kind == "kill-service":
        res = rng.choice([*c.exclusive, *c.services])
        target = f"holder:{res}" if res in c.exclusive else rng.choice(c.nodes)
        return [Step(0.0, "kill_service", target, (res,))], (target,)
    if kind == "etcd-kill":
        return [Step(0.0, "kill_etcd", rng.choice(c.nodes))], ()
    if kind.startswith("malfunction-"):
        res = rng.choice([*c.exclusive, *c.services])
        target = f"holder:{res}" if res in c.exclusive else rng.choice(c.nodes)
        mode = kind.split("-", 1)[1]
        hold = _hold(rng, kind)
        steps = [Step(0.0, "malfunction", target, (res, mode))]
        return [*steps, Step(hold, "malfunction", target, (res, "ok"), heals=True)], ()
    assert kind == "double", kind
    first, second = rng.sample(list(c.nodes), 2)
    kinds = [rng.choice(DOUBLE_PARTS), rng.choice(DOUBLE_PARTS)]
    steps = _single(rng, kinds[0], first) + _single(
        rng, kinds[1], second, round(rng.uniform(0.2, 2.0), 2)
    )
    return sorted(steps, key=lambda s: s.offset), (first, second)


def _operator(rng: random.Random, kind: str, c: Cluster) -> list[Step]:
    node = rng.choice(c.nodes)
    res = rng.choice([*c.exclusive, *c.services])
    hold = _hold(rng, "operator")
    undo: tuple[str, ...] | None = None
    if kind.startswith("maint-"):
        level = kind.split("-", 1)[1]
        what = {
            "cluster": ("--cluster",),
            "node": ("--node", node),
            "resource": ("--resource", res),
            "instance": ("--instance", f"{res}@{node}"),
        }[level]
        do, undo = ("maintenance", "on", *what), ("maintenance", "off", *what)
    elif kind == "move":
        ex = rng.choice(c.exclusive)
        do, undo = ("move", ex, node), ("move", ex, "--clear")
    elif kind == "ban":
        ex = rng.choice(c.exclusive)
        do, undo = ("ban", f"{ex}@{node}"), ("ban", f"{ex}@{node}", "--clear")
    elif kind == "standby":
        do, undo = ("standby", "on", node), ("standby", "off", node)
    elif kind == "cleanup":
        do = ("cleanup", f"{res}@{node}")
    elif kind == "spec-push":
        do = ("spec", "push")
    else:
        assert kind == "rolling-restart", kind
        do = ("resource", "restart", c.rolling, "--rolling")
    steps = [Step(0.0, "corral", None, do)]
    if undo is not None:
        steps.append(Step(hold, "corral", None, undo, heals=True))
    return steps


def episode(rng: random.Random, kind: str, c: Cluster) -> Episode:
    """One episode of ``kind`` (see the module docstring)."""
    gap = round(rng.uniform(1.0, 3.0), 2)
    if kind in OPERATOR:
        return Episode(kind, tuple(_operator(rng, kind, c)), gap)
    steps, nodes = _fault(rng, kind, c)
    return Episode(kind, tuple(steps), gap, nodes)


def generate(
    rng: random.Random,
    cluster: Cluster,
    duration: float,
    *,
    kinds: Sequence[str] = KINDS,
    min_per_kind: int = 1,
    max_episodes: int = 500,
) -> list[Episode]:
    """The schedule (see the module docstring). ValueError for an unknown kind or a cluster
    with fewer than three core nodes (a double fault needs two faulted nodes and quorum needs
    three voters to lose one safely)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown chaos kinds {unknown}; known: {', '.join(KINDS)}")
    if len(cluster.nodes) < 3:
        raise ValueError("a chaos schedule needs at least three core nodes")
    mandatory = [k for k in kinds for _ in range(min_per_kind)]
    rng.shuffle(mandatory)
    out = [episode(rng, k, cluster) for k in mandatory][:max_episodes]
    planned = sum(e.length for e in out)
    while len(out) < max_episodes:
        extra = episode(rng, rng.choice(list(kinds)), cluster)
        if planned + extra.length > duration:
            break
        # a random place, so the extra episodes mix with the mandatory ones
        out.insert(rng.randrange(len(out) + 1), extra)
        planned += extra.length
    return out


def mix(schedule: Sequence[Episode]) -> Counter[str]:
    """How many episodes of each kind."""
    return Counter(e.kind for e in schedule)


def format_mix(schedule: Sequence[Episode]) -> str:
    """One line: ``kind xN`` per kind in catalogue order, and the planned seconds."""
    counts = mix(schedule)
    parts = [f"{k} x{counts[k]}" for k in KINDS if counts[k]]
    planned = sum(e.length for e in schedule)
    return f"{len(schedule)} episodes, {planned:.0f}s planned: " + ", ".join(parts)


def unhealed(schedule: Sequence[Episode]) -> list[str]:
    """Faults or operator states left in place at the end of their episode (should be none):
    a start step without the matching heal step for the same node."""
    problems = []
    for i, ep in enumerate(schedule):
        open_: Counter[tuple[str, ...]] = Counter()
        for step in sorted(ep.steps, key=lambda s: s.offset):
            key = _heal_key(step)
            if key is None:
                continue
            open_[key] += -1 if step.heals else 1
        problems += [f"episode {i} ({ep.kind}): {k} not healed" for k, n in open_.items() if n]
    return problems


def _heal_key(step: Step) -> tuple[str, ...] | None:
    """What a step opens or closes (None for a one-shot step): a node fault is keyed by its
    node (one fault per node per episode), a malfunction by node and resource, an operator
    state by its command without on/off/--clear."""
    actions = {a for pair in HEALS.values() for a in pair}
    if step.action in actions and step.node is not None:
        return ("node", step.node)
    if step.action == "malfunction" and step.node is not None:
        return ("malfunction", step.node, step.args[0])
    if step.action == "corral" and step.args[:1] in (("maintenance",), ("standby",)):
        return tuple(a for a in step.args if a not in ("on", "off"))
    if step.action == "corral" and step.args[:1] in (("move",), ("ban",)):
        return step.args[:2]
    return None
