"""The bootstrap transcripts: ``cases/*.txt``, one scenario per file, read top to bottom.

Commands (one per line; ``#`` starts a comment):

- ``expected NODE...``: the resource's nodes, in spec order.
- ``report NODE [grastate=UUID:SEQNO|grastate=none] [safe] [recovered=UUID:SEQNO]
  [view=SEQ[@REP]] [running]``: the node's report (replaces its previous one); ``view``
  builds the saved view ``"3 REP SEQ"`` (REP defaults to ``r``).
- ``unreport NODE``: its report is gone (its lease expired).
- ``gone NODE WHY`` / ``back NODE``: the node is (no longer) gone for good.
- ``primary [NODE...]``: the nodes that run a Primary component now (none: no node).
- ``since T`` (default 0), ``wait W`` (default 60): the wait's start and length.
- ``decide T``: decide at time ``T``; the lines after it that start with ``>`` are the
  expected decision and its reason.

Regenerate the ``>`` lines with ``pytest --update-scenarios`` and review the diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.core.galera.bootstrap import (
    DEFAULT_WAIT,
    Bootstrap,
    Decision,
    Join,
    Refuse,
    Wait,
    decide,
)
from corral.core.galera.state import GraState, NodeState, Position, SavedView

CASES = Path(__file__).parent / "cases"


@dataclass
class World:
    expected: tuple[str, ...] = ()
    reports: dict[str, NodeState] = field(default_factory=dict)
    gone: dict[str, str] = field(default_factory=dict)
    primary: tuple[str, ...] = ()
    since: float = 0.0
    wait: float = DEFAULT_WAIT


def position(text: str) -> Position:
    uuid, _, seqno = text.rpartition(":")
    return Position(uuid, int(seqno))


def report(words: list[str]) -> NodeState:
    node, grastate, safe, recovered, view, running = words[0], None, False, None, None, False
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == "grastate":
            grastate = None if value == "none" else position(value)
        elif name == "safe":
            safe = True
        elif name == "recovered":
            recovered = position(value)
        elif name == "view":
            seq, _, rep = value.partition("@")
            view = SavedView(f"{node}-gcomm", f"3 {rep or 'r'} {seq}", frozenset())
        elif name == "running":
            running = True
        else:
            raise ValueError(f"unknown report field {word!r}")
    gra = GraState(grastate, safe) if grastate is not None else None
    return NodeState(node, gra, recovered, view, running)


def render(decision: Decision) -> list[str]:
    if isinstance(decision, Wait):
        until = "no end" if decision.until is None else f"until {decision.until:g}"
        head = f"wait for {', '.join(decision.missing)} ({until})"
    elif isinstance(decision, Bootstrap):
        pos = f"{decision.position.uuid}:{decision.position.seqno}"
        flags = "".join(
            f" {f}" for f, on in (("force", decision.force), ("partial", decision.partial)) if on
        )
        then = ", ".join(decision.join_order) or "nobody"
        head = f"bootstrap {decision.node} from {pos}{flags}; then join: {then}"
    elif isinstance(decision, Join):
        head = (
            f"join {', '.join(decision.order) or 'nobody'} (primary: {', '.join(decision.primary)})"
        )
    else:
        assert isinstance(decision, Refuse)
        head = "refuse"
    return [head, f"reason: {decision.reason}"]


def apply(world: World, words: list[str]) -> None:
    verb, args = words[0], words[1:]
    if verb == "expected":
        world.expected = tuple(args)
    elif verb == "report":
        world.reports[args[0]] = report(args)
    elif verb == "unreport":
        world.reports.pop(args[0], None)
    elif verb == "gone":
        world.gone[args[0]] = " ".join(args[1:]) or "gone"
    elif verb == "back":
        world.gone.pop(args[0], None)
    elif verb == "primary":
        world.primary = tuple(args)
    elif verb == "since":
        world.since = float(args[0])
    elif verb == "wait":
        world.wait = float(args[0])
    else:
        raise ValueError(f"unknown command {verb!r}")


def run(text: str) -> str:
    """The transcript with every ``decide``'s ``>`` lines computed afresh."""
    world, out = World(), []
    for line in text.splitlines():
        if line.startswith(">"):
            continue
        out.append(line)
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "decide":
            got = decide(
                world.expected,
                world.reports,
                world.gone,
                world.primary,
                world.since,
                float(words[1]),
                world.wait,
            )
            out += [f"> {said}" for said in render(got)]
        else:
            apply(world, words)
    return "\n".join(out) + "\n"
