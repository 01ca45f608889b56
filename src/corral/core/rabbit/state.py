"""What corral knows of each RabbitMQ node (pure data, no I/O).

- :class:`NodeReport`: what a node's agent reported last (under its lease): the broker's
  state, the cluster its data belongs to, the nodes it sees running.
- :class:`RunRecord`: the nodes a node saw running, written by its agent whenever that set
  changed while its broker ran, and kept (no lease) through an outage. The record written last
  (highest store revision, ``seq``) names the *last-running set*: the nodes that were running
  when the cluster went down. RabbitMQ keeps the same fact in its data directory
  (``nodes_running_at_shutdown``), but only after a clean stop; corral's record also survives
  a kill -9 or a power loss.
- :class:`ForceBootClaim`: the one node allowed to ``force_boot`` in one outage (DESIGN rule
  6), as written in the store.

Node names here are corral's (``ctl1``); the driver maps them to Erlang's (``rabbit@ctl1``).
:func:`erlang_nodes` reads the node lists of RabbitMQ's own files (``cluster_nodes.config``,
``nodes_running_at_shutdown``) for the driver's reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BrokerState = Literal["running", "starting", "paused", "stopped"]
"""``running``: the rabbit application serves. ``starting``: corral started the broker and it
does not serve yet (it may be waiting for its peers' tables, 10 x 30 s by default).
``paused``: the Erlang VM runs but the application stopped by itself (``pause_minority``: the
node sees a minority). ``stopped``: no broker process."""


@dataclass(frozen=True)
class NodeReport:
    """One node's latest report.

    ``identity``: an id corral writes into the node's data directory when the broker first
    creates it ("" when the node holds no data: fresh, or wiped). ``members``: the cluster
    nodes its data knows (itself included; empty when it has no data). ``running``: the nodes
    it sees running (when it runs; else empty). ``since``: when the broker entered ``state``
    (wall-clock seconds of the reporting node)."""

    node: str
    state: BrokerState
    identity: str = ""
    members: frozenset[str] = frozenset()
    running: frozenset[str] = frozenset()
    since: float = 0.0

    @property
    def has_data(self) -> bool:
        return bool(self.identity) and bool(self.members)


@dataclass(frozen=True)
class RunRecord:
    """The nodes ``node`` (data ``identity``) saw running, itself included, when it wrote the
    record; ``seq`` is the record's store revision (one global order, no clock), ``at`` the
    writer's wall clock (for people)."""

    node: str
    identity: str
    running: frozenset[str]
    seq: int
    at: float = 0.0


@dataclass(frozen=True)
class ForceBootClaim:
    """``node`` may force-boot in the outage ``outage`` (the ``seq`` of the run record that
    named the last-running set); ``at``: when the controller claimed it; ``reason`` why."""

    outage: int
    node: str
    at: float
    reason: str


_LIST = re.compile(r"\[([^\[\]]*)\]")
_NODE = re.compile(r"'([^'\\]+@[^'\\]+)'|([a-z][A-Za-z0-9_]*@[A-Za-z0-9_.-]+)")


def erlang_nodes(text: str) -> list[list[str]]:
    """The node lists in an Erlang term file, in order, each in order: ``{['rabbit@a',
    'rabbit@b'], ['rabbit@a']}.`` -> ``[["rabbit@a", "rabbit@b"], ["rabbit@a"]]``;
    ``['rabbit@a'].`` -> ``[["rabbit@a"]]``. Only atoms that name a node (``name@host``) are
    kept; a text without a list gives ``[]`` (the caller reports no data rather than guess)."""
    return [
        [m.group(1) or m.group(2) for m in _NODE.finditer(body)] for body in _LIST.findall(text)
    ]


def corral_name(erlang: str) -> str:
    """``rabbit@ctl1`` -> ``ctl1`` (corral names each broker after its node)."""
    return erlang.partition("@")[2] or erlang


def erlang_name(node: str, prefix: str = "rabbit") -> str:
    """``ctl1`` -> ``rabbit@ctl1``."""
    return f"{prefix}@{node}"
