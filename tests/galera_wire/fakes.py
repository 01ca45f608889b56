"""In-memory twins of :class:`corral.drivers.galera.GaleraServer` and of the store link, for
the member and controller tests. They keep the rules the real server showed on this machine
(tests/galera): ``--wsrep-new-cluster`` is refused while grastate says
``safe_to_bootstrap: 0``; a joiner with no Primary component to join never answers (the real
start times out and stops it); a running server's grastate says ``seqno: -1``; a clean stop
writes the position back; ``--wsrep-recover`` reads the InnoDB position when grastate says -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.galera.state import GraState, NodeState, Position
from corral.drivers.base import DriverError
from corral.drivers.galera import GaleraStatus
from corral.records.galera import BootstrapClaim

UUID = "6b4e1a4c-7ef1-11ee-9d3e-2f5a1f0b6a11"


@dataclass
class FakeCluster:
    """The Galera cluster the fake servers form: the members of the Primary component."""

    uuid: str = UUID
    seqno: int = 0
    primary: set[str] = field(default_factory=set)
    bootstraps: list[str] = field(default_factory=list)  # every --wsrep-new-cluster, in order
    evicted: list[str] = field(default_factory=list)  # every evs.evict, in order


def member_uuid(node: str) -> str:
    """The gcomm uuid of ``node``'s (one) fake server."""
    return f"00000000-0000-0000-0000-{node.encode().hex():0>12}"[:36]


class FakeServer:
    def __init__(self, node: str, cluster: FakeCluster, *, seqno: int | None = None) -> None:
        self.node, self.cluster = node, cluster
        self.initialized = False
        self.grastate: GraState | None = None
        self.innodb: Position | None = None  # what --wsrep-recover finds
        self.up = False
        self.local_state = 4  # 4 synced, 2 donor
        self.calls: list[str] = []
        if seqno is not None:
            self.initialized = True
            self.grastate = GraState(Position(cluster.uuid, seqno), False)

    def crash(self) -> None:
        """kill -9: grastate stays at -1 and InnoDB keeps the position."""
        self.up = False
        self.innodb = Position(self.cluster.uuid, self.cluster.seqno)
        self.grastate = GraState(Position(self.cluster.uuid, -1), False)
        self.cluster.primary.discard(self.node)

    def running(self) -> bool:
        return self.up

    async def initialize(self) -> bool:
        self.calls.append("initialize")
        done, self.initialized = not self.initialized, True
        return done

    async def inspect(self) -> NodeState:
        self.calls.append("inspect")
        g = self.grastate
        recovered = (
            self.innodb if (g is not None and g.position.seqno == -1 and not self.up) else None
        )
        return NodeState(self.node, g, recovered, None, self.up)

    async def allow_bootstrap(self) -> None:
        self.calls.append("allow_bootstrap")
        if self.up or self.grastate is None:
            raise DriverError("cannot mark a running or fresh node")
        self.grastate = GraState(self.grastate.position, True)

    async def start(self, *, bootstrap: bool = False, position: Position | None = None) -> None:
        self.calls.append(f"start bootstrap={bootstrap} position={position}")
        if bootstrap:
            if self.grastate is not None and not self.grastate.safe_to_bootstrap:
                raise DriverError("It may not be safe to bootstrap the cluster from this node")
            self.cluster.bootstraps.append(self.node)
        elif not self.cluster.primary:
            raise DriverError("mariadbd took no SQL: no Primary component to join")
        self.up = True
        self.cluster.primary.add(self.node)
        self.grastate = GraState(Position(self.cluster.uuid, -1), False)

    async def stop(self) -> None:
        self.calls.append("stop")
        if self.up:
            self.cluster.primary.discard(self.node)
            last = not self.cluster.primary
            self.grastate = GraState(Position(self.cluster.uuid, self.cluster.seqno), last)
        self.up = False

    async def view(self) -> list[tuple[str, str]]:
        return [(member_uuid(n), n) for n in sorted(self.cluster.primary)]

    async def clear_evictions(self) -> None:
        self.calls.append("evict clear")
        self.cluster.evicted = []

    async def evict_list(self) -> list[str]:
        return list(self.cluster.evicted)

    async def evict(self, uuid: str) -> None:
        self.calls.append(f"evict {uuid}")
        self.cluster.evicted.append(uuid)
        self.cluster.primary = {n for n in self.cluster.primary if member_uuid(n) != uuid}

    async def ensure_users(self) -> None:
        self.calls.append("ensure_users")
        if not self.up:
            raise DriverError("not answering")

    async def status(self) -> GaleraStatus:
        if not self.up:
            return GaleraStatus(running=False, detail="mariadbd is not running")
        comment = {4: "Synced", 2: "Donor/Desynced", 1: "Joining"}[self.local_state]
        primary = self.node in self.cluster.primary
        return GaleraStatus(
            running=True,
            answering=True,
            local_state=self.local_state,
            state_comment=comment,
            cluster_status="Primary" if primary else "non-Primary",
            ready=primary,
            cluster_size=len(self.cluster.primary),
        )


@dataclass
class FakeLink:
    """The store as a member sees it."""

    node: str
    claimed: BootstrapClaim | None = None
    primaries: tuple[str, ...] = ()
    reports: list[NodeState] = field(default_factory=list)
    store_away: bool = False
    fenced: set[str] = field(default_factory=set)

    async def report(self, state: NodeState) -> None:
        if self.store_away:
            raise ConnectionError("the store is away")
        self.reports.append(state)

    async def claim(self) -> BootstrapClaim | None:
        return self.claimed

    async def primary(self) -> tuple[str, ...]:
        return self.primaries

    async def gone(self) -> frozenset[str]:
        if self.store_away:
            raise ConnectionError("the store is away")
        return frozenset(self.fenced)

    async def holds_claim(self) -> bool:
        if self.store_away:
            raise ConnectionError("the store is away")
        return self.claimed is not None and self.claimed.node == self.node


def agents_spec(cluster: str, profile: str, prefix: str, resources: str) -> str:
    """The spec of db1..db3 at ``<prefix>.1..3`` for in-process agents (the store's endpoint
    is a placeholder: the agents are handed their store client)."""
    nodes = "".join(f"  db{i}: {{address: {prefix}.{i}}}\n" for i in (1, 2, 3))
    return (
        f"cluster: {cluster}\nprofile: {profile}\n"
        'store: {etcd: {endpoints: ["http://127.0.0.1:1"]}}\n'
        f"nodes:\n{nodes}resources:\n{resources}"
    )
