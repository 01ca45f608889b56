"""Deterministic discrete-event simulator: many membership cores in virtual time.

Events live in one heap ordered by ``(time, sequence)``, so a run is a pure function of the seed
and the commands. Per event the cost is one heap operation plus the core's own work; idle nodes
cost nothing between their timers.

Node faults:

- **crash**: the node stops processing; packets to it are dropped. ``restart`` brings up a fresh
  core (incarnation 0) under the same name and address, which joins through its seeds.
- **stall** (a starved VM): for the stall's duration nothing of the node runs. At the end its
  timers fire first, with ``now`` = the end of the stall, then the packets that arrived during
  the stall are handled in arrival order. Timers first is the adversarial order (a late ack loses
  the race against its own timeout), which is what makes a slow node raise false suspicions.
- **slow** (a CPU-starved receive path, the anomaly Lifeguard was designed for): every packet
  the node receives is handled a random delay late, first in first out, while its timers still
  fire on time. Its acks arrive "late", so it suspects healthy members and hears their
  refutations after its own suspicion timers ran out.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral.core.membership import (
    Member,
    MemberChanged,
    MembershipConfig,
    MemberState,
    NodeMeta,
    Packet,
    Send,
)
from corral.core.membership.core import Membership
from corral.core.membership.effects import Effect, LeaveDone
from corral.sim.network import Latency, Network

_DELIVER, _WAKE, _STALL_END, _LATE, _CALL = range(5)

ChangeHook = Callable[[float, str, MemberChanged], None]
SendHook = Callable[[float, str, Send], None]


@dataclass(slots=True, eq=False)
class SimNode:
    """One simulated member and its fault state."""

    name: str
    addr: str
    core: Membership
    seeds: tuple[str, ...] = ()
    crashed: bool = False
    left: bool = False
    stall_until: float = 0.0
    backlog: list[tuple[Packet, str]] = field(default_factory=list)
    wake_at: float = float("inf")
    slow: tuple[float, float, float] | None = None
    """``(until, min_delay, max_delay)`` while the node is slow."""
    slow_fifo: float = 0.0


class Simulator:
    """N membership cores over a simulated :class:`Network`, in virtual time."""

    def __init__(
        self,
        seed: int = 0,
        config: MembershipConfig | None = None,
        latency: Latency | None = None,
        loss: float = 0.0,
    ) -> None:
        self.seed = seed
        self.config = config or MembershipConfig()
        self.now = 0.0
        self.network = Network(random.Random(f"net:{seed}"), latency, loss)
        self.nodes: dict[str, SimNode] = {}
        self._by_addr: dict[str, SimNode] = {}
        self._heap: list[tuple[float, int, int, SimNode | None, object]] = []
        self._order = 0
        self._rng = random.Random(f"sim:{seed}")
        self.change_hooks: list[ChangeHook] = []
        self.send_hooks: list[SendHook] = []
        self.events = 0
        """Events processed so far (a cost measure for benchmarks)."""

    # ------------------------------------------------------------------ building

    def _core(self, name: str, meta: NodeMeta, config: MembershipConfig | None) -> Membership:
        rng = random.Random(f"{self.seed}:{name}:{self.now}")
        return Membership(name, name, config or self.config, rng, self.now, meta)

    def add_node(
        self,
        name: str,
        seeds: Iterable[str] = (),
        meta: NodeMeta | None = None,
        config: MembershipConfig | None = None,
    ) -> SimNode:
        """Start ``name`` (its address is its name) and join through ``seeds`` (names)."""
        if name in self.nodes:
            raise ValueError(f"node {name} exists")
        node = SimNode(name, name, self._core(name, meta or NodeMeta(), config), tuple(seeds))
        self.nodes[name] = node
        self._by_addr[node.addr] = node
        self._apply(node, node.core.join(node.seeds, self.now))
        return node

    def bootstrap(self, names: list[str], config: MembershipConfig | None = None) -> None:
        """Start ``names`` as a converged cluster: every table already holds every member.

        The records are shared between the tables (they are immutable), so a 5,000-node cluster
        costs one dict per node rather than 25 million records.
        """
        records = {n: Member(n, n, NodeMeta(), 0, MemberState.ALIVE, self.now) for n in names}
        for name in names:
            if name in self.nodes:
                raise ValueError(f"node {name} exists")
            core = self._core(name, NodeMeta(), config)
            core.preload(records)
            node = SimNode(name, name, core)
            self.nodes[name] = node
            self._by_addr[name] = node
            self._reschedule(node)

    # ------------------------------------------------------------------ faults

    def crash(self, name: str) -> None:
        node = self.nodes[name]
        node.crashed = True
        node.backlog.clear()
        node.slow = None

    def restart(self, name: str, seeds: Iterable[str] | None = None) -> None:
        """A crashed node comes back as a fresh process (incarnation 0, empty table)."""
        node = self.nodes[name]
        if not node.crashed and not node.left:
            raise ValueError(f"{name} is running")
        node.crashed = node.left = False
        node.stall_until = 0.0
        node.core = self._core(name, node.core.meta, node.core.config)
        if seeds is not None:
            node.seeds = tuple(seeds)
        node.wake_at = float("inf")
        self._apply(node, node.core.join(node.seeds, self.now))

    def leave(self, name: str) -> None:
        node = self.nodes[name]
        self._apply(node, node.core.leave(self.now))

    def stall(self, name: str, duration: float) -> None:
        """Freeze ``name`` for ``duration`` seconds from now (see the module docstring)."""
        node = self.nodes[name]
        end = self.now + duration
        if end > node.stall_until:
            node.stall_until = end
            self._push(end, _STALL_END, node, None)

    def slow(self, name: str, until: float, delay: tuple[float, float] = (0.2, 0.6)) -> None:
        """Until time ``until``, ``name`` handles each packet it receives ``delay`` seconds late
        (uniform in the range, FIFO); its timers are unaffected."""
        node = self.nodes[name]
        node.slow = (until, delay[0], delay[1])

    def at(self, time: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual ``time`` (for scripted faults inside a run)."""
        self._push(time, _CALL, None, action)

    # ------------------------------------------------------------------ running

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to time ``end`` (then ``now == end``); with ``stop``, return
        ``True`` as soon as it holds after an event (``now`` is then that event's time)."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            time, _, kind, node, payload = pop(heap)
            self.now = time
            self.events += 1
            if kind == _DELIVER:
                assert node is not None
                self._deliver(node, payload)  # type: ignore[arg-type]
            elif kind == _WAKE:
                assert node is not None
                self._wake(node, time)
            elif kind == _STALL_END:
                assert node is not None
                self._stall_end(node)
            elif kind == _LATE:
                assert node is not None
                self._handle(node, payload)  # type: ignore[arg-type]
            else:
                payload()  # type: ignore[operator]
            if stop is not None and stop():
                return True
        self.now = max(self.now, end)
        return False

    def run_for(self, seconds: float, stop: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + seconds, stop)

    # ------------------------------------------------------------------ views

    def view(self, observer: str, member: str) -> MemberState | None:
        """``observer``'s idea of ``member``'s state (``None`` if it does not know it)."""
        record = self.nodes[observer].core.member(member)
        return record.state if record is not None else None

    def running(self) -> list[SimNode]:
        """Nodes that are neither crashed nor gone (stalled and slow nodes count)."""
        return [n for n in self.nodes.values() if not n.crashed and not n.left]

    # ------------------------------------------------------------------ internals

    def _push(self, time: float, kind: int, node: SimNode | None, payload: object) -> None:
        self._order += 1
        heapq.heappush(self._heap, (time, self._order, kind, node, payload))

    def _reschedule(self, node: SimNode) -> None:
        deadline = node.core.next_deadline()
        if deadline < node.wake_at:
            node.wake_at = deadline
            self._push(deadline, _WAKE, node, None)

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        now = self.now
        for effect in effects:
            if type(effect) is Send:
                for hook in self.send_hooks:
                    hook(now, node.name, effect)
                dst = self._by_addr.get(effect.addr)
                if dst is None:
                    continue
                delay = self.network.delay(node.name, dst.name, effect.reliable)
                if delay is not None:
                    self._push(now + delay, _DELIVER, dst, (effect.packet, node.addr))
            elif type(effect) is MemberChanged:
                for change_hook in self.change_hooks:
                    change_hook(now, node.name, effect)
            elif type(effect) is LeaveDone:
                node.left = True
        self._reschedule(node)

    def _deliver(self, node: SimNode, payload: tuple[Packet, str]) -> None:
        if node.crashed or node.left:
            return
        slow = node.slow
        if slow is not None:
            if self.now < slow[0]:
                late = max(self.now + self._rng.uniform(slow[1], slow[2]), node.slow_fifo)
                node.slow_fifo = late
                self._push(late, _LATE, node, payload)
                return
            node.slow = None
        self._handle(node, payload)

    def _handle(self, node: SimNode, payload: tuple[Packet, str]) -> None:
        if node.crashed or node.left:
            return
        if node.stall_until > self.now:
            node.backlog.append(payload)
            return
        self._apply(node, node.core.handle(payload[0], payload[1], self.now))

    def _wake(self, node: SimNode, time: float) -> None:
        if node.wake_at != time:
            return  # superseded by an earlier wake that already ran
        node.wake_at = float("inf")
        if node.crashed or node.left or node.stall_until > self.now:
            return
        self._apply(node, node.core.tick(self.now))

    def _stall_end(self, node: SimNode) -> None:
        if node.crashed or node.left or node.stall_until > self.now:
            return
        node.wake_at = float("inf")
        self._apply(node, node.core.tick(self.now))
        backlog, node.backlog = node.backlog, []
        for packet, src in backlog:
            if node.crashed or node.left:
                break
            self._apply(node, node.core.handle(packet, src, self.now))
