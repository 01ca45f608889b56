"""Record ``data/store-before-v1.json``: a store written by the code before versioned records.

The fixture of :mod:`tests.records.test_upgrade` was made with corral at commit ``af3d4aa``
(the last commit before ``corral.records``), from the repository root::

    git worktree add /tmp/old af3d4aa
    PYTHONPATH=/tmp/old/src:. .venv/bin/python tests/records/record_dump.py \
        tests/records/data/store-before-v1.json
    git worktree remove /tmp/old

It runs that commit's agents (three nodes, fake drivers, one in-memory store, the real
controller) for a few rounds, then writes every key with its value (base64) and mod revision.
What it leaves in the store, on purpose:

- ``n1`` is the controller; ``n2`` has ``db`` banned and ``web`` in maintenance there;
- ``n3``'s agent froze (its registration and status stay) and the controller fenced that
  registration (``fenced/n3`` names it); the lease revoke failed, so ``n3`` reads as fenced;
- ``web`` failed to start once on ``n3`` (a failcount with a reason); ``moves``, ``standby``,
  an ``lb/n1`` record, a request left for the frozen ``n3``, and the agents' events.

The test reads the file only; it never runs this script (it needs the old code).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from corral.agent.lb import LbDuty
from corral.agent.node import Agent
from corral.core.clock import ManualClock
from corral.core.health import CheckOutcome
from corral.drivers.base import DriverError, DriverStatus, NodeContext
from corral.spec import HealthCheck, Resource, Spec, load_spec_text
from corral.store import Compare, Keys, MemoryStore, StoreError


def dump(value: object) -> bytes:
    """JSON as af3d4aa wrote its records (keys sorted, compact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


SPEC = """
cluster: up
store: {etcd: {endpoints: ["http://127.0.0.1:1"]}}
nodes:
  n1: {address: 127.0.0.1}
  n2: {address: 127.0.0.2}
  n3: {address: 127.0.0.3}
fencing:
  power: {agent: FENCE_AGENT, action: 'off'}
resources:
  db: {process: /bin/db, mode: active-passive}
  web: {process: /bin/web}
  front: {vip: 127.0.0.100/8}
"""
KEYS = Keys("up")


class Driver:
    """A service in memory; ``refusals`` first starts fail (a counted failure)."""

    def __init__(self, refusals: int = 0) -> None:
        self.running, self.refusals = False, refusals

    async def start(self) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise DriverError("exit status 1 (recorded on purpose)")
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def status(self) -> DriverStatus:
        return DriverStatus("running" if self.running else "stopped")

    async def adopt(self) -> bool:
        return False

    async def promote(self) -> None:
        pass

    async def demote(self) -> None:
        pass


class RevokeFails(MemoryStore):
    """Leases never expire (a clock that stands still) and a revoke fails once asked to:
    the window between a fence record and the end of the fenced lease, kept open."""

    fail_revoke = False

    async def revoke(self, lease_id: int) -> None:
        if self.fail_revoke:
            raise StoreError("revoke failed (recorded on purpose)")
        await super().revoke(lease_id)


async def healthy(check: HealthCheck, node: NodeContext) -> CheckOutcome:
    return CheckOutcome("ok", "fine")


class Balancer:
    def render_config(self) -> str:
        return "global\n"

    async def apply_config(self, text: str) -> bool:
        return True

    async def set_servers(self, desired: object) -> object:
        return None


def agent(spec: Spec, node: str, store: MemoryStore, base: Path) -> Agent:
    drivers: dict[str, Driver] = {}

    def factory(name: str, res: Resource, ctx: NodeContext, item: str | None) -> Driver:
        refusals = 1 if (node, name) == ("n3", "web") else 0
        return drivers.setdefault(name, Driver(refusals))

    (base / node).mkdir()
    return Agent(spec, node, store, state_dir=base / node, driver_factory=factory, checker=healthy)


async def until(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def record(out: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="corral-dump-"))
    fence = base / "fence_ok"
    fence.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")
    fence.chmod(0o755)
    spec = load_spec_text(SPEC.replace("FENCE_AGENT", str(fence)))
    store = RevokeFails(ManualClock())
    agents = {n: agent(spec, n, store, base) for n in spec.nodes}
    tasks = {"n1": asyncio.create_task(agents["n1"].run())}

    async def is_controller() -> bool:
        kv = await store.get(KEYS.controller)
        return kv is not None and kv.value == b"n1"

    await until(is_controller, "n1 the controller")
    tasks |= {n: asyncio.create_task(agents[n].run()) for n in ("n2", "n3")}

    async def failed_once() -> bool:
        return await store.get(KEYS.failcount("n3", "web")) is not None

    await until(failed_once, "web failed once on n3")
    for name, value in (
        ("bans", {"instances": ["db@n2"]}),
        ("maintenance", {"instances": ["web@n2"]}),
        ("moves", {"db": "n1"}),
        ("standby", {"nodes": []}),
    ):
        await store.put(KEYS.admin(name), dump(value))  # as `corral ban|maintenance|...` writes
    await asyncio.sleep(3.0)  # rounds: the controller places db on n1, web everywhere
    await lb_record(spec, store, agents["n1"])
    await freeze_and_fence(store, agents, tasks)
    await asyncio.sleep(2.0)  # the controller plans around the fenced registration
    for task in tasks.values():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await write(store, out)


async def lb_record(spec: Spec, store: MemoryStore, n1: Agent) -> None:
    duty = LbDuty(store, KEYS, "n1")  # type: ignore[call-arg]  # af3d4aa's LbDuty: no clock
    await duty.sync(spec, Balancer(), n1.lease, set(), await duty.view(spec))


async def freeze_and_fence(
    store: RevokeFails, agents: dict[str, Agent], tasks: dict[str, asyncio.Task[None]]
) -> None:
    """``n3``'s agent freezes; an operator asks it for a restart meanwhile; the controller
    fences its registration (the old controller's own fence path, the revoke failing)."""
    tasks["n3"].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await tasks.pop("n3")
    await store.put(KEYS.request("n3", "web"), dump({"action": "restart", "id": "0" * 32}))
    found = await store.get(KEYS.node("n3"))
    controller = agents["n1"].controller
    assert found is not None and controller.token is not None
    guard = Compare(KEYS.controller, "create_revision", "==", controller.token)
    store.fail_revoke = True
    fence = controller._fence_registration  # the old controller's fence, as step() runs it
    assert await fence(agents["n1"].spec, "n3", found, guard, "frozen (recorded on purpose)")


async def write(store: MemoryStore, out: Path) -> None:
    kvs = (await store.range(b"/")).kvs
    doc = {
        "made_with": "corral af3d4aa, tests/records/record_dump.py",
        "revision": store.revision,
        "kvs": [
            {
                "key": kv.key.decode(),
                "value": base64.b64encode(kv.value).decode(),
                "mod_revision": kv.mod_revision,
                "create_revision": kv.create_revision,
                "lease": kv.lease,
            }
            for kv in kvs
        ],
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
