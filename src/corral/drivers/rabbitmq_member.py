"""A RabbitMQ node as a promotable resource instance: the agent's :class:`Driver` over
:class:`corral.drivers.rabbitmq.RabbitServer` (shell).

Contract:

- **Started, unpromoted** (``start``/``demote``/``stop``): the broker is stopped, its files
  exist (``prepare``), and its state (no broker, its data's identity and members) is reported
  through the :class:`RabbitLink` (``rabbitmq/<res>/report/<node>``, under the node's lease).
  Only the controller decides from the reports (:func:`corral.core.rabbit.decide`).
- **Promote** starts the broker only as this node's decision in the controller's plan says
  (``rabbitmq/<res>/plan``): ``start_first``/``start`` from its data, ``join`` a running
  peer (its data moved aside first when ``reset``), ``force_boot`` only when the outage's
  force-boot claim names this node (DESIGN rule 6 at the node: the plan alone is not
  enough). A ``wait`` (or no decision) refuses with :class:`NodeFault` (not the resource's
  failure, rule 7; the agent tries again). Promoting a node whose broker runs does nothing.
- **Status**: one AMQP round trip on a kept-open connection
  (:class:`corral.drivers.rabbitmq_health.AmqpCheck`, no CLI call). ``running`` with the
  detail :data:`SERVING` while it answers; a broker that does not answer yet (booting, or
  paused by ``pause_minority``) is ``running`` with a detail saying so; a promoted broker
  whose process exited is ``failed``. Each status reports the broker's state (written only
  when it changed); while it serves, the nodes it runs with are written as its run record
  (:func:`corral.records.rabbit.write_running`, only when that set changed), and a ``forget``
  decision for this node, or the ``grow`` after a join that replaced a member, is carried out
  in the background (a CLI call costs 2-5 s: the agent's poll never waits for it). A broker
  that does not serve yet while this node's decision has turned to ``force_boot`` (it started
  first from its data and waits for peers that are gone: RabbitMQ would wait 10 x 30 s, then
  exit) is force-booted in the background too, under the same check of the claim as at a
  promote (rule 6), once per outage.
- Without a link (the lease guard's self-fence, rule 1), ``stop`` stops the broker this
  object started, or else the one the node's pid file names, once its environment shows it
  is this node's broker (``RABBITMQ_BASE``: a stale pid file naming another process is left
  alone). ``start`` stops such a broker too (one an earlier agent life left running).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import psutil

from corral.core.rabbit import BrokerState, Decision, ForceBootClaim, NodeReport
from corral.drivers.base import DriverError, DriverStatus, NodeContext, NodeFault
from corral.drivers.rabbitmq import BrokerConfig, RabbitServer, net_ticktime
from corral.spec.model import Resource, Spec
from corral.spec.paths import for_node

if TYPE_CHECKING:  # aio-pika is loaded at the first check, not with the agent
    from corral.drivers.rabbitmq_health import AmqpResult

log = logging.getLogger(__name__)
SERVING = "serving (AMQP round trip ok)"


class RabbitLink(Protocol):
    """What a member needs of the store; the agent's shell implements it."""

    async def report(self, report: NodeReport) -> None:
        """Write this node's report under its lease."""

    async def running(self, identity: str, running: frozenset[str]) -> None:
        """Write this node's run record (the nodes it runs with, itself included)."""

    async def decision(self) -> tuple[Decision | None, int | None]:
        """This node's decision in the controller's plan, and the plan's outage."""

    async def claim(self, outage: int) -> ForceBootClaim | None:
        """The force-boot claim of ``outage``, if any."""

    async def running_peers(self) -> frozenset[str]:
        """The other nodes whose report says their broker serves."""


class Server(Protocol):
    """What a member uses of :class:`RabbitServer`."""

    base: Path

    @property
    def alive(self) -> bool: ...
    def identity(self) -> str: ...
    def report(self, state: BrokerState, running: frozenset[str] = ...) -> NodeReport: ...
    async def prepare(self) -> None: ...
    async def start(self) -> None: ...
    async def join(self, peer: str, *, reset: bool = False) -> None: ...
    async def stop(self, timeout: float = ...) -> None: ...
    async def force_boot(self, outage: int) -> bool: ...
    async def forget(self, node: str) -> None: ...
    async def grow(self) -> None: ...


class Check(Protocol):
    async def check(self) -> AmqpResult: ...
    async def close(self) -> None: ...


class RabbitMember:
    """One node's member of RabbitMQ resource ``name`` (see the module contract)."""

    def __init__(
        self, name: str, node: str, server: Server, check: Check, link: RabbitLink | None = None
    ) -> None:
        self.name, self.node, self.server, self.check, self.link = name, node, server, check, link
        self.promoted = False
        self._reported: NodeReport | None = None
        self._regrow = False
        self._forgotten: set[str] = set()
        self._forced: set[int] = set()  # outages whose force boot a status started
        self._chore: asyncio.Task[None] | None = None

    async def _report(self, state: BrokerState, running: frozenset[str] = frozenset()) -> None:
        """Send the report when it changed. One the store did not take is sent again at the
        next status poll: a stop by rule 1 runs while the store is away, and must neither
        fail for it nor raise into the agent's loop (seen: a StoreUnavailable ended it)."""
        report = self.server.report(state, running)
        if self.link is None or report == self._reported:
            return
        try:
            await self.link.report(report)
        except Exception as exc:  # the store is away (any client error): try again later
            log.warning("%s: state report not written (%s); will try again", self.name, exc)
            return
        self._reported = report

    async def start(self) -> None:
        await self.server.prepare()
        if self.server.alive:  # unpromoted means stopped
            await self.server.stop()
        else:  # a broker an earlier agent life left running
            await asyncio.to_thread(_kill_by_pidfile, self.server.base)
        self.promoted = False
        await self._report("stopped")

    async def stop(self) -> None:
        if not self.server.alive:
            await asyncio.to_thread(_kill_by_pidfile, self.server.base)
        await self.server.stop()
        await self.check.close()
        self.promoted = False
        await self._report("stopped")

    async def adopt(self) -> bool:
        self.promoted = self.server.alive
        return self.promoted

    async def demote(self) -> None:
        await self.stop()

    async def promote(self) -> None:
        if self.server.alive:
            self.promoted = True
            return
        if self.link is None:
            raise DriverError(f"{self.name}: promote needs the store (no link)")
        decision, outage = await self.link.decision()
        if decision is None:
            raise NodeFault(f"{self.name}: not started: no decision for {self.node} yet")
        if decision.action in ("start_first", "start"):
            await self.server.start()
        elif decision.action == "join" and decision.peer is not None:
            await self.server.join(decision.peer, reset=decision.reset)
            self._regrow = decision.regrow
        elif decision.action == "force_boot":
            await self._force_boot(outage)
        else:
            raise NodeFault(f"{self.name}: not started ({decision.action}): {decision.reason}")
        self.promoted = True
        await self._report("starting")

    async def _force_boot(self, outage: int | None) -> None:
        """Rule 6 at the node: only under the claim of this outage that names this node."""
        assert self.link is not None
        claim = await self.link.claim(outage) if outage is not None else None
        if claim is None or claim.node != self.node or outage is None:
            raise NodeFault(
                f"{self.name}: not force-booting: no force-boot claim of outage {outage} names "
                f"{self.node} (DESIGN rule 6)"
            )
        await self.server.force_boot(outage)
        if not self.server.alive:  # acted on before (the marker): start as force-booted
            await self.server.start()

    async def status(self) -> DriverStatus:
        if not self.promoted:
            await self._report("stopped")
            return DriverStatus("running", "broker stopped (state reported)")
        if not self.server.alive:
            await self._report("stopped")
            return DriverStatus("failed", "the broker exited")
        result = await self.check.check()
        if not result.ok:
            await self._report("starting")
            try:
                await self._boot_forced()
            except Exception as exc:  # the store is away: asked again at the next poll
                log.warning("%s: decision not read (%s); will try again", self.name, exc)
            return DriverStatus("running", f"not serving (booting or paused): {result.detail}")
        try:
            await self._record_serving()
        except Exception as exc:  # the store is away: the broker serves all the same
            log.warning("%s: serving, but not recorded (%s); will try again", self.name, exc)
        # rule 1g: a serving broker is a member of a cluster whose partitions RabbitMQ
        # handles itself (pause_minority): not held to the node lease (a store outage must
        # not stop the queues); booting or paused (above) it is held
        return DriverStatus("running", SERVING, promoted=True, joined=True)

    async def _record_serving(self) -> None:
        """The run record (the peers seen running), the report, and the chores it owes."""
        running = frozenset({self.node})
        if self.link is not None:
            running |= await self.link.running_peers()
            await self.link.running(self.server.identity(), running)
        await self._report("running", running)
        await self._chores()

    async def _chores(self) -> None:
        """Start the background CLI work this serving node owes: ``grow`` after a join that
        replaced a member, ``forget`` of a node the plan names (once each)."""
        if self.link is None or (self._chore is not None and not self._chore.done()):
            return
        if self._regrow:
            self._regrow = False
            self._chore = asyncio.create_task(self._cli("grow", self.server.grow()))
            return
        decision, _ = await self.link.decision()
        peer = decision.peer if decision is not None and decision.action == "forget" else None
        if peer is not None and peer not in self._forgotten:
            self._forgotten.add(peer)
            self._chore = asyncio.create_task(self._cli(f"forget {peer}", self.server.forget(peer)))

    async def _boot_forced(self) -> None:
        """A booting broker (not serving) whose decision is now ``force_boot``: stop it and
        boot it without waiting for its peers (:meth:`_force_boot`: only under the claim of
        the outage naming this node), in the background, once per outage."""
        if self.link is None or (self._chore is not None and not self._chore.done()):
            return
        decision, outage = await self.link.decision()
        if decision is None or decision.action != "force_boot" or outage is None:
            return
        if outage not in self._forced:
            self._forced.add(outage)
            work = self._force_boot(outage)
            self._chore = asyncio.create_task(self._cli(f"force_boot {outage}", work))

    async def _cli(self, what: str, work: Awaitable[None]) -> None:
        try:
            await work
            log.info("%s on %s: %s done", self.name, self.node, what)
        except DriverError as exc:
            log.warning("%s on %s: %s failed: %s", self.name, self.node, what, exc)
            self._forgotten.clear()  # the plan still says so: tried again
            self._forced.clear()


def _kill_by_pidfile(base: Path) -> bool:
    """SIGKILL the broker VM that ``base/broker.pid`` names, if it runs *and* is this node's
    broker (its environment names ``base`` as ``RABBITMQ_BASE``: a stale pid file after a
    reboot may name an unrelated process, which is left alone). A broker this object did not
    start: the lease guard's self-fence, or one left by an earlier agent life. True: killed."""
    try:
        pid = int((base / "broker.pid").read_text().strip())
        proc = psutil.Process(pid)
        if proc.environ().get("RABBITMQ_BASE") != str(base):
            return False
        os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        return True
    except (OSError, ValueError, psutil.Error):
        return False


def config_for(name: str, res: Resource, node: NodeContext, spec: Spec) -> BrokerConfig:
    """The broker settings of ``node``'s member of rabbitmq resource ``name``: directory
    ``base_dir/<name>`` (``{node.name}`` in it is the node's name), ``net_ticktime`` from the
    spec's timing profile, ``pause_minority``."""
    r = res.rabbitmq
    if r is None or r.erlang_cookie is None:
        raise DriverError(f"{name}: not a rabbitmq resource with an erlang_cookie")
    return BrokerConfig(
        node.name,
        node.address,
        Path(for_node(r.base_dir, node.name)) / name,
        r.erlang_cookie,
        net_ticktime=net_ticktime(spec.effective_timing),
        amqp_port=r.amqp_port,
        dist_port=r.dist_port,
        user=r.user,
        password=r.password,
    )


RabbitFactory = Callable[[str, Resource, NodeContext, Spec, RabbitLink | None], RabbitMember]


def rabbit_member(
    name: str, res: Resource, node: NodeContext, spec: Spec, link: RabbitLink | None = None
) -> RabbitMember:
    """The member of ``name`` on ``node`` over a real :class:`RabbitServer` and AMQP check
    (the check logs in as ``user`` with the resolved password, ``guest`` without one)."""
    from corral.drivers.rabbitmq import RabbitServer

    config = config_for(name, res, node, spec)
    server = RabbitServer(config)
    return RabbitMember(name, node.name, server, _LazyCheck(server, config), link)


class _LazyCheck:
    """An :class:`AmqpCheck` made at the first check, once ``prepare`` resolved the
    password (the spec holds only its reference)."""

    def __init__(self, server: RabbitServer, config: BrokerConfig) -> None:
        self.server, self.config = server, config
        self._check: Check | None = None

    async def check(self) -> AmqpResult:
        if self._check is None:
            from corral.drivers.rabbitmq_health import AmqpCheck

            user, password = self.server.login
            self._check = AmqpCheck(
                self.config.address, self.config.amqp_port, user=user, password=password
            )
        return await self._check.check()

    async def close(self) -> None:
        if self._check is not None:
            await self._check.close()
