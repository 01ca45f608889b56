"""A service's check loop never dies silently: a checker that raises, a verdict callback that
fails, a check task that ends anyway. What a user would see otherwise: a service stuck at its
last verdict ("starting: no check result yet", or "healthy" while it fails) for ever.

Agents run for real (asyncio) on an in-memory store, with a fake driver and a scripted checker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.agent.node import Agent
from corral.core.health import CheckOutcome
from corral.records import Event, StatusRecord
from corral.store import MemoryStore

from .fakes import ScriptedChecker, make_agent, spec_text, until


def health(store: MemoryStore, resource: str = "web") -> str | None:
    kv = store._kv.get(f"/corral/t/status/n1/{resource}".encode())
    return None if kv is None else StatusRecord.read(kv.value).instances[0].health


def events(store: MemoryStore) -> list[str]:
    return [Event.read(kv.value).reason for k, kv in store._kv.items() if b"/events/" in k]


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("error", [RuntimeError("boom"), asyncio.CancelledError()])
async def test_a_checker_that_raises_fails_that_check_and_the_checks_go_on(
    tmp_path: Path, error: BaseException
) -> None:
    """Before: the check task died at the first raise and web stayed "starting" for ever."""
    store, checker = MemoryStore(), ScriptedChecker()
    checker.raises["web"] = [error]
    async with running(make_agent(store, tmp_path, spec_text("web"), checker=checker)):
        await until(lambda: health(store) == "healthy", 5, "web reported healthy")
        calls = checker.calls["web"]
        await asyncio.sleep(0.3)
        assert checker.calls["web"] > calls  # still checked


class FailingEventStore(MemoryStore):
    """A store that fails (not with a StoreError: a bug) the first write of an event whose
    text contains ``text``."""

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text: bytes | None = text

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        if self.text is not None and b"/events/" in key and self.text in value:
            self.text = None
            raise RuntimeError("a bug in the store client")
        return await super().put(key, value, lease)


async def test_a_verdict_callback_that_fails_does_not_stop_the_checks(tmp_path: Path) -> None:
    """Before: the healthy verdict's callback raised, the check task died with it, and a web
    that failed afterwards was reported healthy for ever (and never restarted)."""
    store, checker = FailingEventStore(b"web is healthy"), ScriptedChecker()
    world: dict[str, bool] = {}
    async with running(make_agent(store, tmp_path, spec_text("web"), checker=checker, world=world)):
        await until(lambda: health(store) == "healthy", 5, "web reported healthy")
        assert store.text is None  # the callback did fail
        checker.answer["web"] = CheckOutcome("critical", "HTTP 500")
        await until(
            lambda: any("web is unhealthy" in e for e in events(store)), 5, "web seen failing"
        )


async def test_a_check_task_that_ended_is_started_again_with_an_event(tmp_path: Path) -> None:
    """Whatever ends a check task (here a stray cancellation from outside), the agent notices,
    says so in an event, and the service is checked again."""
    store, checker = MemoryStore(), ScriptedChecker()
    agent = make_agent(store, tmp_path, spec_text("web"), checker=checker)
    async with running(agent):
        await until(lambda: health(store) == "healthy", 5, "web reported healthy")
        task = agent.services["web"].task
        assert task is not None
        task.cancel()
        await until(
            lambda: any("checks of web were down" in e for e in events(store)), 5, "an event"
        )
        checker.answer["web"] = CheckOutcome("critical", "HTTP 500")
        await until(
            lambda: any("web is unhealthy" in e for e in events(store)), 5, "web seen failing"
        )
