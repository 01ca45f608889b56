"""Slow is not dead, on a running agent (asyncio, an in-memory store, fake drivers, scripted
checks): checks that time out while the agent itself is late restart nothing and count no
failure, while a service that refuses connections during the same lag is restarted and
counted, and one that times out with the agent on time is too (safety rule 7).

The agent's lateness is injected: its clock jumps forward during a check, as it does for an
agent whose event loop did not run for that long (what the check's watch measures is the same
on the real clock; ``test_stall.py`` blocks a real loop).
"""

from __future__ import annotations

from pathlib import Path

from corral.clocks import MonotonicClock
from corral.core.health import CheckOutcome
from corral.drivers.base import NodeContext
from corral.records import FailCountRecord
from corral.spec import HealthCheck
from corral.store import MemoryStore

from .fakes import ScriptedChecker, make_agent, spec_text, until
from .test_checks import events, health, running

HUNG = CheckOutcome("timeout", "no answer within 0.2s", 0.2)
REFUSED = CheckOutcome("critical", "connection refused")
STOPPED = 0.5  # seconds the agent's loop "did not run" during a check: more than the timeout


class LateClock(MonotonicClock):
    """The real clock, moved on by ``behind`` seconds: the time an agent's loop lost."""

    def __init__(self) -> None:
        self.behind = 0.0

    def now(self) -> float:
        return super().now() + self.behind


class LateChecker(ScriptedChecker):
    """A scripted checker whose ``late[name]`` next answers each come after the agent lost
    ``STOPPED`` seconds in the check."""

    def __init__(self, clock: LateClock) -> None:
        super().__init__()
        self.clock = clock
        self.late: dict[str, list[CheckOutcome]] = {}

    async def __call__(self, check: HealthCheck, node: NodeContext) -> CheckOutcome:
        assert check.http is not None
        name = check.http.url.rsplit("/", 1)[-1]
        script = self.late.get(name)
        if not script:
            return await super().__call__(check, node)
        self.calls[name] = self.calls.get(name, 0) + 1
        self.clock.behind += STOPPED
        return script.pop(0)


def failcount(store: MemoryStore, resource: str) -> int:
    kv = store._kv.get(f"/corral/t/failcounts/n1/{resource}".encode())
    return 0 if kv is None else FailCountRecord.read(kv.value).count


async def test_a_late_agent_restarts_nothing_while_a_dead_service_still_fails(
    tmp_path: Path,
) -> None:
    clock, store, world = LateClock(), MemoryStore(), dict[str, bool]()
    checker = LateChecker(clock)
    agent = make_agent(
        store, tmp_path, spec_text("web", "db"), checker=checker, world=world, clock=clock
    )
    async with running(agent):
        await until(
            lambda: health(store, "web") == health(store, "db") == "healthy", 5, "both healthy"
        )
        # Two timeouts of web with the agent late (fall is 2: counted, they would restart it),
        # and db dead: it refuses, with the agent late as well.
        checker.late["web"] = [HUNG, HUNG]
        checker.late["db"] = [REFUSED]
        checker.answer["db"] = REFUSED
        await until(lambda: failcount(store, "db") == 1, 5, "db restarted and counted")
        await until(lambda: not checker.late["web"], 5, "web's late checks done")
        calls = checker.calls["web"]
        await until(lambda: checker.calls["web"] >= calls + 3, 5, "web checked on time again")
        assert failcount(store, "web") == 0
        assert world["web"] and not any(e.startswith("stopped web") for e in events(store))
        assert health(store, "web") == "healthy"
        told = [e for e in events(store) if e.startswith("web: the check timed out")]
        assert len(told) == 1 and "not counted" in told[0], events(store)
        assert any(e.startswith("stopped db: restart") for e in events(store))
        assert not any(e.startswith("db: ") for e in events(store))  # no refusal excused

        checker.answer["web"] = HUNG  # now web hangs with the agent on time: counted
        await until(lambda: failcount(store, "web") == 1, 5, "web restarted and counted")
        assert told == [e for e in events(store) if e.startswith("web: the check timed out")]
