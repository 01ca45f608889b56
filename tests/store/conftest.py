"""Fixtures: the ``store`` fixture runs every contract test on both backends; real etcd
members (lan timing, loopback, free ports) are stopped by PID when the test ends, pass or fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from corral.core.clock import ManualClock
from corral.store import MemoryStore, Store
from corral.store.lab import EtcdLab, etcd_lab

Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture
async def etcd1(tmp_path: Path) -> AsyncIterator[EtcdLab]:
    async with etcd_lab(tmp_path, 1) as lab:
        yield lab


@pytest.fixture
async def etcd3(tmp_path: Path) -> AsyncIterator[EtcdLab]:
    async with etcd_lab(tmp_path, 3) as lab:
        yield lab


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        mem = MemoryStore(ManualClock(1000.0))
        yield mem
        await mem.close()
        return
    async with etcd_lab(tmp_path, 1) as lab, lab.client() as real:
        yield real


@pytest.fixture
def elapse(store: Store) -> Elapse:
    """Let ``seconds`` pass for the store: the memory store's clock jumps, etcd's is waited."""

    async def run(seconds: float) -> None:
        if isinstance(store, MemoryStore):
            assert isinstance(store.clock, ManualClock)
            store.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    return run
