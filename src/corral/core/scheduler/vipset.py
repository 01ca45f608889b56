"""Where each VIP of a vip-set goes (pure; :meth:`Placer._vip_set` feeds it).

Order of the rules, each applied to the VIPs not placed yet:
1. Kept: a VIP in maintenance stays where it is (``frozen``).
2. Blocked: a VIP whose holder is unclean waits for the fence or the lease (rule 2); without
   quorum a VIP that runs on no allowed node is not started (rule 3).
3. Fail-back (``fail_back: true``, with quorum): a VIP returns to its home node.
4. Stickiness: a VIP stays on its holder while that node has room.
5. Spread: the rest go to the allowed node with the fewest VIPs (then node order), one VIP per
   node while there are enough nodes (``cap`` = ceil(VIPs / allowed nodes)).

A VIP that nobody holds goes where what it goes with (``with:``, HAProxy) is healthy now while
such a node exists, not to a node that has just come back and is still starting HAProxy (the
VIP would answer there with nothing behind it, for seconds). A held VIP's move is gated by the
order instead (it waits for HAProxy on the target, and serves meanwhile). So when every node
where such a VIP serves now is full (``cap``), a VIP that only stickiness kept there makes room:
it moves to the least-loaded node (gated, serving meanwhile) and the new VIP takes its place.
The plan then stays within ``cap`` and the next plan keeps it (stickiness keeps every VIP on a
node within ``cap``). Only when no such VIP is there does the new one go over ``cap`` (it
serves at once; a later plan spreads it: two steps by design). Nothing makes room for a VIP
whose home (fail-back) is allowed but does not serve it yet: it returns there on a later plan
(two steps by design), and a move now would only be undone then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from corral.core.scheduler.model import Instance

SPREAD = "spread: one VIP per node while there are enough nodes"


@dataclass
class VipSpread:
    """One vip-set's placement. ``items``: its VIPs in spec order; ``homes``: its home nodes
    in order; ``allowed``: the nodes it may run on, best first; ``holders``: VIP -> instances
    seen holding it (offline nodes left out); ``ready``: whether a node serves a VIP now."""

    items: Sequence[str]
    homes: Sequence[str]
    allowed: Sequence[str]
    holders: dict[str, list[Instance]]
    ready: Callable[[str], bool]
    node_order: dict[str, int]
    assign: dict[str, str] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)  # VIPs kept only by stickiness, in order
    pending: dict[str, str] = field(default_factory=dict)  # VIP -> home it returns to later

    def __post_init__(self) -> None:
        self._serves = {n for n in self.allowed if self.ready(n)}  # asked once per node

    @property
    def cap(self) -> int:
        return -(-len(self.items) // max(len(self.allowed), 1))

    def keep(self, item: str, node: str) -> None:
        self.assign[item] = node
        self.count[node] = self.count.get(node, 0) + 1

    def _drop(self, item: str) -> None:
        node = self.assign.pop(item)
        self.count[node] -= 1

    def fail_back(self, free: Sequence[str]) -> None:
        """Send each of ``free`` home while its home is allowed and has room; a VIP that
        nobody holds and whose home does not serve it yet is left for now (``pending``)."""
        if not self.homes:
            return
        for item in free:
            home = self.homes[self.items.index(item) % len(self.homes)]
            if home not in self.allowed or not self._room(home):
                continue
            if self._fit(item, home):
                self.keep(item, home)
                self.why[item] = f"returns to its home node {home} (fail_back)"
            else:  # serves elsewhere first, returns home once it serves there (two steps)
                self.pending[item] = home

    def stick(self, free: Sequence[str]) -> None:
        """Keep each VIP of ``free`` not placed yet on a node that holds it and has room."""
        for item in free:
            for holder in self.holders.get(item, []):
                node = holder.node
                if item not in self.assign and node in self.allowed and self._room(node):
                    self.keep(item, node)
                    self.stuck.append(item)

    def spread(self, free: Sequence[str]) -> list[str]:
        """Place what is left; returns the VIPs that cannot run anywhere."""
        nowhere = []
        for item in free:
            if item in self.assign:
                continue
            if not self.allowed:
                nowhere.append(item)
                continue
            node = min(self.allowed, key=lambda n: self._spread_key(item, n))
            if not self._room(node) and item not in self.pending:
                node = self._make_room(item) or node
            self.keep(item, node)
            every = all(self._fit(item, n) for n in self.allowed)
            self.why[item] = SPREAD + ("" if every else ", among those ready to serve it")
        return nowhere

    def _make_room(self, item: str) -> str | None:
        """Free a slot for ``item`` (nobody holds it; every node that serves it now is full):
        the last VIP in spec order that only stickiness kept on such a node moves to the
        least-loaded other allowed node below ``cap``, counting the VIPs that will fail back
        there (``pending``). Returns the node freed, or None when there is no such move.

        The moved VIP is held, so it fits anywhere; everything stays within ``cap``, so the
        next plan's fail-back and stickiness keep both where this one puts them. Not called
        for a ``pending`` VIP: it leaves for its home on a later plan anyway.
        """
        returning = Counter(self.pending.values())
        load = {n: self.count.get(n, 0) + returning[n] for n in self.allowed}
        for other in reversed(self.stuck):
            node = self.assign[other]
            if not self._fit(item, node):
                continue
            rest = [n for n in self.allowed if n != node and load[n] < self.cap]
            if not rest:
                return None
            self.stuck.remove(other)
            self._drop(other)
            self.keep(other, min(rest, key=lambda n: (load[n], self.node_order[n])))
            self.why[other] = f"{SPREAD}; makes room on {node} for {item}, which serves there"
            return node
        return None

    def _spread_key(self, item: str, node: str) -> tuple[bool, int, int]:
        return (not self._fit(item, node), self.count.get(node, 0), self.node_order[node])

    def _room(self, node: str) -> bool:
        return self.count.get(node, 0) < self.cap

    def _fit(self, item: str, node: str) -> bool:
        """A held VIP fits anywhere allowed; one nobody holds fits where it serves now, or
        anywhere when no allowed node serves it yet."""
        return bool(self.holders.get(item)) or node in self._serves or not self._serves
