"""Where each VIP of a vip-set goes (pure; :meth:`Placer._vip_set` feeds it).

Order of the rules, each applied to the VIPs not placed yet:
1. Kept: a VIP in maintenance stays where it is (``frozen``).
2. Blocked: a VIP whose holder is unclean waits for the fence or the lease (rule 2); without
   quorum a VIP that runs on no allowed node is not started (rule 3).
3. Fail-back (``fail_back: true``, with quorum): a VIP returns to its home node.
4. Stickiness: a VIP stays on its holder while that node has room.
5. Spread: the rest go to the allowed node with the fewest VIPs (then node order), one VIP per
   node while there are enough nodes (``cap`` = ceil(VIPs / allowed nodes)).

A VIP goes where what it goes with (``with:``, HAProxy) is healthy now while such a node
exists (``_fit``): one nobody holds does not start on a node that has just come back and is
still starting HAProxy (it would answer there with nothing behind it, for seconds), and one
that serves where it is held never moves (fail-back, spread) to a node that does not serve it
yet. A move of a VIP is a handoff (``core/assign.py``): the controller withdraws it from its
holder first and assigns the new node once the holder has stopped it. A move to a node that
does not serve yet would withdraw a VIP that serves, and the plan on the next state (nobody
holds it) would put it back where HAProxy serves: it would flap until HAProxy serves there.

So while its home or the least-loaded node does not serve it yet, a VIP stays where it serves,
over ``cap`` if need be, and moves there on a later plan, once HAProxy is healthy there, in one
handoff (two steps by design: the plan that starts HAProxy, then the plan that moves the VIP).
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        self._serves = {n for n in self.allowed if self.ready(n)}  # asked once per node

    @property
    def cap(self) -> int:
        return -(-len(self.items) // max(len(self.allowed), 1))

    def keep(self, item: str, node: str) -> None:
        self.assign[item] = node
        self.count[node] = self.count.get(node, 0) + 1

    def fail_back(self, free: Sequence[str]) -> None:
        """Send each of ``free`` home while its home is allowed, has room and serves it (a VIP
        that does not fit its home yet serves elsewhere and returns once it does)."""
        if not self.homes:
            return
        for item in free:
            home = self.homes[self.items.index(item) % len(self.homes)]
            if home in self.allowed and self._room(home) and self._fit(item, home):
                self.keep(item, home)
                self.why[item] = f"returns to its home node {home} (fail_back)"

    def stick(self, free: Sequence[str]) -> None:
        """Keep each VIP of ``free`` not placed yet on a node that holds it and has room."""
        for item in free:
            for holder in self.holders.get(item, []):
                node = holder.node
                if item not in self.assign and node in self.allowed and self._room(node):
                    self.keep(item, node)

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
            self.keep(item, node)
            every = all(self._fit(item, n) for n in self.allowed)
            self.why[item] = SPREAD + ("" if every else ", among those ready to serve it")
        return nowhere

    def _spread_key(self, item: str, node: str) -> tuple[bool, int, int]:
        return (not self._fit(item, node), self.count.get(node, 0), self.node_order[node])

    def _room(self, node: str) -> bool:
        return self.count.get(node, 0) < self.cap

    def _fit(self, item: str, node: str) -> bool:
        """A VIP fits where it serves now, or anywhere when no allowed node serves it yet; one
        held only where it does not serve fits anywhere (moving it withdraws nothing that
        serves). So a VIP that serves where it is held never fits a node that does not serve
        it yet: it stays where it serves (see the module docstring: the handoff)."""
        if node in self._serves or not self._serves:
            return True
        held = self.holders.get(item, [])
        return bool(held) and not any(h.node in self._serves for h in held)
