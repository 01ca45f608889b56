"""Fakes for agents on an in-memory store: a driver, scripted checkers, a store whose writes
can be held (to put two coroutines inside one store call at once, deterministically)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from corral.agent.instances import LocalService
from corral.agent.node import Agent
from corral.core.health import CheckOutcome
from corral.drivers.base import Driver, DriverStatus, NodeContext
from corral.spec import HealthCheck, Resource, load_spec_text
from corral.store import EtcdStore, MemoryStore
from corral.store.lab import EtcdLab

FAST = "{interval: 50ms, timeout: 200ms, rise: 1, fall: 2}"


def spec_text(*resources: str, checks: str = FAST) -> str:
    """One node ``n1``; each resource a process checked over (fake) HTTP with ``checks``."""
    body = "".join(
        f"  {name}:\n    process: /bin/{name}\n    health: {{http: 'http://h/{name}', {checks[1:]}\n"
        for name in resources
    )
    return (
        "cluster: t\nstore: {etcd: {endpoints: [http://127.0.0.1:1]}}\n"
        "nodes:\n  n1: {address: 127.0.0.1}\n"
        f"resources:\n{body}"
    )


class FakeDriver:
    """A service that runs in memory. ``running`` is shared per instance through ``world``."""

    def __init__(self, name: str, world: dict[str, bool]) -> None:
        self.name, self.world = name, world

    async def start(self) -> None:
        self.world[self.name] = True

    async def stop(self) -> None:
        self.world[self.name] = False

    async def status(self) -> DriverStatus:
        return DriverStatus("running" if self.world.get(self.name) else "stopped")

    async def adopt(self) -> bool:
        return bool(self.world.get(self.name))

    async def promote(self) -> None:
        pass

    async def demote(self) -> None:
        pass


def fake_factory(world: dict[str, bool]) -> Callable[..., Driver]:
    def make(name: str, res: Resource, ctx: NodeContext, item: str | None) -> Driver:
        return FakeDriver(name, world)

    return make


class ScriptedChecker:
    """A checker whose answer per resource is set by the test: an outcome, or an exception
    to raise (once per entry of ``raises``, before answering again)."""

    def __init__(self) -> None:
        self.answer: dict[str, CheckOutcome] = {}
        self.raises: dict[str, list[BaseException]] = {}
        self.calls: dict[str, int] = {}

    async def __call__(self, check: HealthCheck, node: NodeContext) -> CheckOutcome:
        assert check.http is not None
        name = check.http.url.rsplit("/", 1)[-1]
        self.calls[name] = self.calls.get(name, 0) + 1
        pending = self.raises.get(name)
        if pending:
            raise pending.pop(0)
        return self.answer.get(name, CheckOutcome("ok", f"{name} answers"))


class GatedStore(MemoryStore):
    """A memory store whose puts/deletes of keys containing ``match`` can be held: a held call
    waits before it is applied, until :meth:`release`. ``count`` holds only that many calls."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, tuple[bytes, asyncio.Event, list[int]]] = {}
        self.waiting: dict[str, int] = {"put": 0, "delete": 0}

    def hold(self, op: str, match: bytes, count: int = 1_000_000) -> None:
        self._held[op] = (match, asyncio.Event(), [count])

    def release(self, op: str) -> None:
        self._held.pop(op)[1].set()

    async def _gate(self, op: str, key: bytes) -> None:
        held = self._held.get(op)
        if held is None or held[0] not in key or held[2][0] <= 0:
            return
        held[2][0] -= 1
        self.waiting[op] += 1
        try:
            await held[1].wait()
        finally:
            self.waiting[op] -= 1

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        await self._gate("put", key)
        return await super().put(key, value, lease=lease)

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        await self._gate("delete", key)
        return await super().delete(key, prefix=prefix)


def make_agent(store: MemoryStore, state_dir: Path, text: str, **kw: object) -> Agent:
    world: dict[str, bool] = kw.pop("world", {})  # type: ignore[assignment]
    checker = kw.pop("checker", ScriptedChecker())
    return Agent(
        load_spec_text(text),
        "n1",
        store,
        state_dir=state_dir,
        driver_factory=fake_factory(world),
        checker=checker,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def local_service(agent: Agent, name: str) -> LocalService:
    """A running instance of ``name`` in ``agent.services``, without a check task (the test
    feeds its verdicts)."""
    svc = LocalService(
        name, FakeDriver(name, {name: True}), list(agent.spec.resources[name].health)
    )
    svc.reset(agent.clock.now())
    agent.services[name] = svc
    return svc


async def until(check: Callable[[], object], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not within {timeout:g}s: {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def agents_running(
    etcd: EtcdLab,
    spec_text: str,
    nodes: Iterable[str],
    state: Path,
    world: dict[str, bool],
    fit: Callable[[Agent], None] = lambda agent: None,
) -> AsyncIterator[dict[str, Agent]]:
    """Real agents in this process on ``etcd`` (one client each), their plain services over
    :func:`fake_factory`'s ``world``, each adjusted by ``fit`` before it runs (a member
    factory, say); cancelled and their clients closed afterwards, also after a failure."""
    agents: dict[str, Agent] = {}
    stores: list[EtcdStore] = []
    tasks = []
    try:
        for node in nodes:
            store = etcd.store(timeout=1.0, attempt_timeout=0.5)
            stores.append(store)
            agent = Agent(
                load_spec_text(spec_text), node, store, state_dir=state / node,
                driver_factory=fake_factory(world), checker=ScriptedChecker(),
            )  # fmt: skip
            fit(agent)
            agents[node] = agent
            tasks.append(asyncio.create_task(agent.run()))
        yield agents
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for store in stores:
            await store.close()
