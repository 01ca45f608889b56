"""A controller world in virtual time, driven by transcript commands (tests/transcripts/controller).

Real :class:`~corral.agent.controller.Controller` objects, one per node that needs one, run on
one in-memory store (:class:`~corral.store.MemoryStore`) whose leases run on a virtual
monotonic clock; a virtual wall clock is given to them as ``wall``; fence devices are a scripted
runner that succeeds or fails on command. Nothing sleeps: a command runs to completion, the
background fences it started included, before the next one. See :data:`HELP` for the commands.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from corral.agent.actuator import add_failure
from corral.agent.controller import Controller
from corral.core.clock import ManualClock
from corral.drivers.base import DriverError, NodeContext
from corral.records import FailCountRecord, FencedRecord, SystemicRecord, node_states
from corral.records import encode as dump
from corral.spec import Spec, load_spec_text
from corral.spec.model import FenceDevice
from corral.store import Compare, Keys, MemoryStore, Op, TxnResult

HELP = """
spec NAME                      the cluster (SPECS: basic, failures, five, vips); first command
register N...                  N registers under a new lease (its nodes/N key)
lease-expire N                 N's lease expires: its registration and status records go
gossip-dead N [at=T] [by=A,B]  gossip of A, B (default: every other node) holds N dead
                               since monotonic T (default: now)
gossip-alive N                 no gossip holds N dead any more
status N RES HEALTH            N reports RES (HEALTH: healthy, unhealthy, starting; none: gone);
                               RES[ITEM] is one member of a vip-set (the others N reports stay)
fail N RES [times=K] [every=D] N's agent counts K failures of RES (default 1), D apart (the
                               clocks advance D after each but the last)
maintenance RES|node=N|off     admin/maintenance freezes a resource, a node, or nothing
campaign N | step N | replace-dead N
depose N by=M                  N's controller key goes; M takes it (N is not told)
race COMMAND                   COMMAND runs inside the next store transaction, just before it
fence-fails | fence-works      the fence devices fail / succeed from now on
advance 5s                     both clocks move on
wall-step -1h                  only the wall clock jumps (an NTP step)
show assign|events|nodes|failcounts|systemic
                               the assign/ records; the events since the last show; node
                               states; failure records; announced systemic episodes
"""

SPECS = {
    "basic": """
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
  n3: {address: 198.18.0.3}
fencing:
  ipmi: {agent: fence_ipmilan, action: 'off'}
resources:
  web: {process: /bin/web}
  db: {process: /bin/db, mode: active-passive}
""",
    "failures": """
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
  n3: {address: 198.18.0.3}
resources:
  web: {process: /bin/web}
  api: {process: /bin/api}
  db: {process: /bin/db, mode: active-passive}
""",
    "five": """
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
  n3: {address: 198.18.0.3}
  n4: {address: 198.18.0.4}
  n5: {address: 198.18.0.5}
fencing:
  ipmi: {agent: fence_ipmilan, action: 'off'}
resources:
  db: {process: /bin/db, mode: active-passive}
""",
    "vips": """
cluster: t
nodes:
  n1: {address: 198.18.0.1, roles: [lb]}
  n2: {address: 198.18.0.2, roles: [lb]}
  n3: {address: 198.18.0.3, roles: [lb]}
fencing:
  ipmi: {agent: fence_ipmilan, action: reboot}
resources:
  haproxy: {haproxy: {}, on: {role: lb}}
  vips:
    vip-set: [198.18.0.100/24, 198.18.0.101/24, 198.18.0.102/24]
    on: {role: lb}
    with: [haproxy]
""",
}
LEASE_TTL = 3600  # leases end by `lease-expire`, not by the clock: no keepalives to script
EPOCH = 1_700_000_000.0  # the wall clock at the start of every transcript
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """``5s``, ``-1h``, ``250ms`` -> seconds."""
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    return float(text)


class RacingStore(MemoryStore):
    """A memory store that runs a scripted coroutine inside the next transaction, before its
    compares are evaluated: what another node did between a controller's read and its write."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.races: list[Callable[[], Awaitable[str]]] = []
        self.said: list[str] = []

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if self.races:
            race = self.races.pop(0)
            self.said.append(f"meanwhile: {await race()}")
        return await super().txn(compares, success, failure)


class World:
    """The cluster of one transcript: execute(command) -> output."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(1000.0)
        self.wall = EPOCH
        self.store = RacingStore(self.clock)
        self.keys = Keys("t")
        self.spec: Spec | None = None
        self.leases: dict[str, int] = {}
        self.deaths: dict[str, dict[str, float]] = {}  # observer -> node -> since (monotonic)
        self.controllers: dict[str, Controller] = {}
        self.fence_ok = True
        self.fenced: list[str] = []  # what the fence runner did during the command
        self.events_shown = b""

    def close(self) -> None:
        self.loop.close()

    def execute(self, command: str) -> str:
        return self.loop.run_until_complete(self._execute(command))

    async def _execute(self, command: str) -> str:
        out = [await self.run(command)]
        await self._settle()
        await self._watch()
        out += self.store.said + self.fenced
        self.store.said, self.fenced = [], []
        return "\n".join(line for line in out if line)

    async def _settle(self) -> None:
        """Let the background fences the command started finish (they never wait on time)."""
        me = asyncio.current_task()
        while pending := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            await asyncio.gather(*pending)

    async def _watch(self) -> None:
        """What every agent's watch does: a controller key is noted as seen when it is made
        (not when its holder dies), so a death after it counts for ``replace_dead``."""
        kv = await self.store.get(self.keys.controller)
        if kv is not None:
            for node in self.leases:
                self.controller(node).noticed(kv.key, kv.mod_revision)

    async def run(self, command: str) -> str:
        words = shlex.split(command)
        name, args = words[0], words[1:]
        handler = getattr(self, "do_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}:{HELP}")
        if name != "spec" and self.spec is None:
            raise ValueError("the first command is `spec NAME`")
        result: str = await handler(*args)
        return result

    # --- the cluster -------------------------------------------------------------------------

    async def do_spec(self, name: str) -> str:
        self.spec = load_spec_text(SPECS[name])
        self.deaths = {n: {} for n in self.spec.nodes}
        return f"nodes {' '.join(self.spec.nodes)}; resources {' '.join(self.spec.resources)}"

    async def do_register(self, *nodes: str) -> str:
        out = []
        for node in nodes:
            self.leases[node] = (await self.store.grant(LEASE_TTL)).id
            rev = await self.store.put(self.keys.node(node), dump({}), lease=self.leases[node])
            out.append(f"{node} registered (revision {rev})")
        return "\n".join(out)

    async def do_lease_expire(self, node: str) -> str:
        await self.store.revoke(self.leases.pop(node))
        return f"{node}'s lease expired"

    async def do_gossip_dead(self, node: str, *opts: str) -> str:
        options = dict(o.split("=", 1) for o in opts)
        at = float(options.get("at", self.clock.now()))
        others = [n for n in self._spec().nodes if n != node]
        observers = options["by"].split(",") if "by" in options else others
        for observer in observers:
            self.deaths[observer][node] = at
        return f"{node} dead since {at:g} for {', '.join(observers)}"

    async def do_gossip_alive(self, node: str) -> str:
        for seen in self.deaths.values():
            seen.pop(node, None)
        return f"{node} alive for everyone"

    async def do_status(self, node: str, resource: str, health: str) -> str:
        name, _, item = resource.rstrip("]").partition("[")
        key = self.keys.status(node, name)
        kv = await self.store.get(key)
        kept = [
            i
            for i in (json.loads(kv.value)["instances"] if kv is not None and item else [])
            if i["item"] != item
        ]
        if health != "none":
            kept.append({"role": "started", "health": health, "item": item or None})
        if not kept:
            await self.store.delete(key)
        else:
            await self.store.put(key, dump({"instances": kept}), lease=self.leases[node])
        return (
            f"{node} reports no {resource}"
            if health == "none"
            else (f"{node} reports {resource} {health}")
        )

    async def do_fail(self, node: str, resource: str, *opts: str) -> str:
        """What an agent's actuator does on a counted failure (the same code)."""
        options = dict(o.split("=", 1) for o in opts)
        times, every = int(options.get("times", "1")), seconds(options.get("every", "0"))
        key = self.keys.failcount(node, resource)
        out = []
        for i in range(times):
            if i:
                self.clock.advance(every)
                self.wall += every
            added = await add_failure(self.store, key, self.wall, "check failed")
            out.append(
                f"{node} failed {resource} at wall {self.wall:.1f}" + ("" if added else " (lost)")
            )
        return "\n".join(out)

    async def do_maintenance(self, what: str) -> str:
        record: dict[str, Any] = {}
        if what.startswith("node="):
            record = {"nodes": [what[len("node=") :]]}
        elif what != "off":
            record = {"resources": [what]}
        await self.store.put(self.keys.admin("maintenance"), dump(record))
        return f"maintenance: {what}"

    async def do_fence_fails(self) -> str:
        self.fence_ok = False
        return "fence devices fail from now on"

    async def do_fence_works(self) -> str:
        self.fence_ok = True
        return "fence devices work from now on"

    async def do_advance(self, amount: str) -> str:
        step = seconds(amount)
        self.clock.advance(step)
        self.wall += step
        return f"monotonic {self.clock.now():.3f}, wall {self.wall:.3f}"

    async def do_wall_step(self, amount: str) -> str:
        self.wall += seconds(amount)
        return f"monotonic {self.clock.now():.3f}, wall {self.wall:.3f}"

    async def do_race(self, *command: str) -> str:
        text = shlex.join(command)
        self.store.races.append(lambda: self.run(text))
        return f"next transaction: {text} first"

    # --- controllers -------------------------------------------------------------------------

    async def do_campaign(self, node: str) -> str:
        won = await self.controller(node).campaign(self.leases[node])
        return f"{node} is the controller" if won else f"{node} is not the controller"

    async def do_step(self, node: str) -> str:
        return await self.controller(node).step()

    async def do_replace_dead(self, node: str) -> str:
        controller = self.controller(node)
        said = await controller.replace_dead()
        if said is not None:
            return said
        decision = controller.last_replace
        return "nothing" if decision is None else f"nothing: {decision.why.value}"

    async def do_depose(self, node: str, by: str) -> str:
        other = by.removeprefix("by=")
        await self.store.delete(self.keys.controller)
        won = await self.controller(other).campaign(self.leases[other])
        return f"{other} took the controller key from {node}" if won else f"{other} could not"

    def controller(self, node: str) -> Controller:
        if node not in self.controllers:
            self.controllers[node] = Controller(
                self.store,
                self.keys,
                node,
                self._spec,
                wall=lambda: self.wall,
                deaths=lambda: self.deaths[node],
                clock=self.clock,
                fence=self._fence,
            )
        return self.controllers[node]

    async def _fence(self, device: FenceDevice, target: NodeContext) -> None:
        outcome = "ok" if self.fence_ok else "failed"
        self.fenced.append(f"fence agent {device.agent}: {device.action} {target.name}: {outcome}")
        if not self.fence_ok:
            raise DriverError("no answer from the BMC")

    def _spec(self) -> Spec:
        assert self.spec is not None
        return self.spec

    # --- show --------------------------------------------------------------------------------

    async def do_show(self, what: str) -> str:
        shows = {
            "assign": self._show_assign,
            "events": self._show_events,
            "nodes": self._show_nodes,
            "failcounts": self._show_failcounts,
            "systemic": self._show_systemic,
        }
        return await shows[what]()

    async def _listing(self, section: str, row: Callable[[bytes], str], none: str) -> str:
        """One line per record of ``section``: its name, then ``row(value)``."""
        prefix = self.keys.prefix(section)
        kvs = (await self.store.range(prefix)).kvs
        return "\n".join(f"{kv.key[len(prefix) :].decode()}: {row(kv.value)}" for kv in kvs) or none

    async def _show_assign(self) -> str:
        def row(value: bytes) -> str:
            where = [
                (f"{i['item']}@" if i.get("item") else "") + f"{i['node']} (reg {i['reg']})"
                for i in json.loads(value)["instances"]
            ]
            return ", ".join(where) or "nowhere"

        return await self._listing("assign", row, "no assignments")

    async def _show_events(self) -> str:
        out = []
        for kv in (await self.store.range(self.keys.event_prefix())).kvs:
            if kv.key > self.events_shown:
                event = json.loads(kv.value)
                what = f"{event['kind']} {event['resource']}".rstrip()
                out.append(f"{event['node']} {what}: {event['reason']}")
                self.events_shown = kv.key
        return "\n".join(out) or "no new events"

    async def _show_failcounts(self) -> str:
        def row(value: bytes) -> str:
            record = FailCountRecord.read(value)
            listed = " ".join(f"{r.at - EPOCH:g}{'s' if r.systemic else ''}" for r in record.recent)
            return (
                f"counted {record.count}, systemic {record.systemic}; "
                f"listed (wall - 1.7e9, s: systemic): {listed}"
            )

        return await self._listing("failcounts", row, "no failure records")

    async def _show_systemic(self) -> str:
        def row(value: bytes) -> str:
            record = SystemicRecord.read(value)
            nodes = ", ".join(record.nodes)
            return f"since wall {record.since - EPOCH:g} on {nodes} of {record.size}"

        return await self._listing("systemic", row, "no systemic episode")

    async def _show_nodes(self) -> str:
        kvs = (await self.store.range(self.keys.root.encode())).kvs
        holder = await self.store.get(self.keys.controller)
        fenced = {kv.key: FencedRecord.parse(kv.value) for kv in kvs}
        out = []
        for node, state in node_states(self._spec(), self.keys, kvs).items():
            notes = ["controller"] if holder and holder.value == node.encode() else []
            record = fenced.get(self.keys.fenced(node))
            if record is not None:
                notes.append(f"fenced registration {record.revision} by {record.device}")
            out.append(f"{node}: {state}" + (f" ({'; '.join(notes)})" if notes else ""))
        return "\n".join(out)
