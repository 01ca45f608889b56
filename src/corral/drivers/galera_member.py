"""A Galera node as a promotable resource instance: the agent's :class:`Driver` over
:class:`corral.drivers.galera.GaleraServer` (shell).

Contract (the roles of issue 16):

- **Started, unpromoted** (``start``/``demote``): mariadbd is stopped, the datadir exists
  (``initialize`` on first use), and the node's state (grastate, recovered position, saved
  view) is inspected and reported through the :class:`GaleraLink` (``galera/<res>/report/
  <node>``, under the node's lease). Only the controller decides from the reports.
- **Promote** starts mariadbd, and only in one of two ways (DESIGN rule 6 at the node):
  as the *bootstrap node* when the link says this node at its current registration holds the
  bootstrap claim (:func:`corral.records.galera.may_bootstrap`; its grastate is marked
  ``safe_to_bootstrap: 1`` first when the claim says ``force``), or as a *joiner* only while
  another member runs a Primary component, confirmed ``CONFIRM_PRIMARY`` later (never into a
  vanished cluster, even on records not yet updated after a crash of every server). Otherwise it
  refuses with :class:`NodeFault` (not the resource's failure, rule 7; the agent tries
  again). A recovered position is passed as ``--wsrep-start-position``. Promoting a node
  whose mariadbd already runs does nothing.
- **Status**: ``running`` while started; ``promoted`` only when the server is Synced, in the
  Primary component and ready (a donor, a joiner or a non-Primary node is not promoted: not
  ready for clients). A promoted node whose mariadbd died is ``failed``.
- **Rule 1g** (:mod:`corral.core.galera.hold`): ``status`` says ``joined`` for a member
  started as a joiner, or started as the bootstrap node once a read of the claim
  (:meth:`GaleraLink.holds_claim`) shows it no longer names this node; the agent then no longer
  holds it to the node lease. A failed read keeps it held.
- **Eviction** (rule 2): a member synced in the Primary component evicts (``evs.evict``) the
  members of its view whose nodes were fenced and have not registered again
  (:func:`corral.core.galera.evs.evictions`), at its status poll.
- **Stop**: mariadbd stopped (idempotent); with a link, the state after the stop is reported.
  The lease guard makes this driver without a link (:func:`galera_member`), so the self-fence
  (rule 1) stops mariadbd, a bootstrapping one included, with nothing but the spec.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from corral.core.galera.evs import evictions, evictions_over, provider_options
from corral.core.galera.hold import StartedAs, joined
from corral.core.galera.state import NodeState, Position
from corral.drivers.base import DriverError, DriverStatus, NodeContext, NodeFault
from corral.drivers.galera import GaleraStatus
from corral.drivers.galera_conf import GaleraSettings
from corral.records.galera import BootstrapClaim
from corral.spec.model import Resource, Spec
from corral.spec.paths import for_node

log = logging.getLogger(__name__)

PRIMARY_DETAIL = "synced, Primary"  # the status detail of a member clients may use
CONFIRM_PRIMARY = 2.0  # > the agents' status poll (1 s) and its publication: see promote


class GaleraLink(Protocol):
    """What a member needs of the store; the agent's shell implements it."""

    async def report(self, state: NodeState) -> None:
        """Write this node's report under its lease."""

    async def claim(self) -> BootstrapClaim | None:
        """The bootstrap claim when it names this node at its current registration."""

    async def primary(self) -> tuple[str, ...]:
        """The other members that run a Primary component now."""

    async def holds_claim(self) -> bool:
        """Whether a bootstrap claim naming this node (any registration) exists now; raises
        when the store cannot say."""

    async def gone(self) -> frozenset[str]:
        """The nodes fenced (a fence that succeeded) and not registered again since."""


class Server(Protocol):
    """What a member uses of :class:`GaleraServer` (a fake in tests behaves the same)."""

    @property
    def node(self) -> str: ...
    def running(self) -> bool: ...
    async def initialize(self) -> bool: ...
    async def inspect(self) -> NodeState: ...
    async def allow_bootstrap(self) -> None: ...
    async def start(self, *, bootstrap: bool = False, position: Position | None = None) -> None: ...
    async def stop(self) -> None: ...
    async def status(self) -> GaleraStatus: ...
    async def ensure_users(self) -> None: ...
    async def view(self) -> list[tuple[str, str]]: ...
    async def evict(self, member_uuid: str) -> None: ...
    async def clear_evictions(self) -> None: ...
    async def evict_list(self) -> list[str]: ...


class GaleraMember:
    """One node's member of Galera resource ``name`` (see the module contract)."""

    def __init__(self, name: str, server: Server, link: GaleraLink | None = None) -> None:
        self.name, self.server, self.link = name, server, link
        self.last: NodeState | None = None  # the last state inspected while stopped
        self.promoted = False
        self.started_as: StartedAs | None = None  # how its mariadbd was started (rule 1g)
        self.unsent: NodeState | None = None  # a report the store did not take
        self.evicted: set[str] = set()  # gcomm uuids this member evicted (rule 2)
        self.confirm = CONFIRM_PRIMARY

    async def _report(self) -> NodeState:
        state = await self.server.inspect()
        self.last = state
        await self._send(state)
        return state

    async def _send(self, state: NodeState) -> None:
        """Send the report; one the store did not take is sent again at the next status poll
        (a stop by rule 1 runs when the store is away: the stop must not fail for it, and the
        controller must not wait for ever on a report that was lost)."""
        self.unsent = None
        if self.link is None:
            return
        try:
            await self.link.report(state)
        except Exception as exc:  # the store is away (any client error): try again later
            log.warning("%s: state report not written (%s); will try again", self.name, exc)
            self.unsent = state

    async def start(self) -> None:
        await self.server.initialize()
        if self.server.running():  # left by an earlier life: unpromoted means stopped
            await self.server.stop()
        self.promoted, self.started_as = False, None
        await self._report()

    async def stop(self) -> None:
        await self.server.stop()
        self.promoted, self.started_as = False, None
        if self.link is not None:
            await self._report()

    async def adopt(self) -> bool:
        self.promoted = self.server.running()
        self.started_as = "adopted" if self.promoted else None
        return self.promoted

    async def demote(self) -> None:
        await self.stop()

    async def promote(self) -> None:
        if self.server.running():
            self.promoted = True
            self.started_as = self.started_as or "adopted"  # unknown how: held (rule 1g)
            return
        if self.link is None:
            raise DriverError(f"{self.name}: promote needs the store (no link)")
        state = self.last or await self._report()
        claim = await self.link.claim()
        if claim is not None:
            if claim.force:
                await self.server.allow_bootstrap()
            self.started_as = "bootstrap"  # held to the lease from before the start (rule 1g)
            await self.server.start(bootstrap=True, position=_position(state, claim))
            self.promoted, self.last = True, None
            await self.server.ensure_users()  # on the new Primary; the joiners get them by SST
            return
        elif await self._primary_confirmed():
            self.started_as = "join"
            await self.server.start(position=state.recovered)
        else:
            raise NodeFault(
                f"{self.name}: not promoted: no Primary component to join and no bootstrap "
                "claim for this node (waiting for the controller's decision)"
            )
        self.promoted = True
        self.last = None  # the files change under a running server

    async def _primary_confirmed(self) -> bool:
        """Whether a Primary component runs to join: the other members' records say so now
        and still say so ``confirm`` seconds later. Why: when every mariadbd dies at once
        (a kill -9 of all), a member whose agent restarts it first reads the others' records
        before their agents' polls marked them failed; started as a joiner into that
        vanished cluster it blocked the recovery for its whole start timeout (seen: 250 s
        with real agents), since a running server outside a Primary is a state the bootstrap
        decision must wait on (resource-agents PR 1557 is the same trap)."""
        if not await self.link_primary():
            return False
        await asyncio.sleep(self.confirm)
        return bool(await self.link_primary())

    async def link_primary(self) -> tuple[str, ...]:
        return () if self.link is None else await self.link.primary()

    async def status(self) -> DriverStatus:
        if not self.promoted:
            if self.unsent is not None:
                await self._send(self.unsent)
            if self.unsent is not None:
                return DriverStatus("running", "mariadbd stopped (state not reported yet)")
            return DriverStatus("running", "mariadbd stopped (state reported)")
        found = await self.server.status()
        if not found.running:
            return DriverStatus("failed", found.detail or "mariadbd is not running")
        member = await self._joined()
        if found.healthy:
            await self._evict()
            return DriverStatus("running", PRIMARY_DETAIL, promoted=True, joined=member)
        said = found.state_comment or found.detail or "not answering"
        detail = f"{said}, {found.cluster_status or '?'}: not ready"
        return DriverStatus("running", detail, joined=member)

    async def _evict(self) -> None:
        """``evs.evict`` the members of this node's view whose nodes were fenced (rule 2:
        the fence succeeded, so they are off), so that the survivors commit again at once
        instead of after ``evs.suspect_timeout``. Best effort: the derived timeouts bound the
        stall anyway (:mod:`corral.core.galera.evs`)."""
        if self.link is None:
            return
        try:
            gone = await self.link.gone()
            if not gone:
                if evictions_over(await self.server.evict_list(), gone):  # every fenced node back
                    await self.server.clear_evictions()
                    log.warning("%s: evict list emptied (no fenced node left)", self.name)
                    self.evicted.clear()
                return
            me = self.server.node
            for node, uuid in evictions(await self.server.view(), gone, me, self.evicted):
                await self.server.evict(uuid)
                self.evicted.add(uuid)
                log.warning("%s: evicted %s (%s) from the group: it was fenced", me, node, uuid)
        except Exception as exc:  # the store or the server did not answer: the next poll
            log.warning("%s: eviction not done (%s)", self.name, exc)

    async def _joined(self) -> bool:
        """Rule 1g: whether this running member is joined (not held to the lease). A
        bootstrap node (or an adopted one) reads the claim until it no longer names it; from
        then on it is a joined member like the others."""
        if self.started_as in (None, "join"):
            return joined(self.server.running(), self.started_as, None)
        names: bool | None = None
        if self.link is not None:
            try:
                names = await self.link.holds_claim()
            except Exception:  # the store is away: the member stays held (rule 1)
                names = None
        if joined(self.server.running(), self.started_as, names):
            self.started_as = "join"
            return True
        return False


def _position(state: NodeState, claim: BootstrapClaim) -> Position | None:
    """The position a bootstrap starts from: the claim's when it came from --wsrep-recover
    (grastate says -1), else None (grastate already holds it)."""
    return claim.position if state.recovered is not None else None


def settings_for(name: str, res: Resource, node: NodeContext, spec: Spec) -> GaleraSettings:
    """The settings of ``node``'s member of galera resource ``name``: peers are the addresses
    of every node the resource may run on; the directory is ``base_dir/<name>`` (two Galera
    resources on one node never share files; ``{node.name}`` in it is the node's name); the
    provider options are the ``evs.*`` timeouts of the spec's timing profile, then the
    resource's own."""
    g = res.galera
    if g is None:
        raise DriverError(f"{name}: not a galera resource")
    peers = tuple(str(n.address) for n_name, n in spec.nodes.items() if res.on.allows(n_name, n))
    try:
        return GaleraSettings(
            node=node.name,
            address=node.address,
            peers=peers or (node.address,),
            cluster=f"{spec.cluster}-{name}",
            base_dir=Path(for_node(g.base_dir, node.name)) / name,
            port=g.port,
            sst_method=g.sst_method,
            sst_user=g.sst_user,
            sst_password=g.sst_password,
            check_user=g.check_user,
            check_password=g.check_password,
            provider_options=provider_options(spec.effective_timing, g.provider_options),
            run_as=g.run_as,
            options=tuple(g.options.items()),
        )
    except ValueError as exc:
        raise DriverError(f"{name}: {exc}") from None


GaleraServerFactory = Callable[[str, Resource, NodeContext, Spec], Server]


def default_galera_server(name: str, res: Resource, node: NodeContext, spec: Spec) -> Server:
    """A real :class:`GaleraServer` for ``node``'s member of ``name``."""
    from corral.drivers.galera import GaleraServer

    return GaleraServer(settings_for(name, res, node, spec))


def galera_member(
    name: str, res: Resource, node: NodeContext, spec: Spec, link: GaleraLink | None = None
) -> GaleraMember:
    """The member of ``name`` on ``node`` over a real :class:`GaleraServer`."""
    return GaleraMember(name, default_galera_server(name, res, node, spec), link)
