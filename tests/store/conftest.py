from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.core.clock import ManualClock
from corral.store import MemoryStore, Store
from corral.store.lab import EtcdLab, etcd_lab


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
        mem = MemoryStore(ManualClock())
        yield mem
        await mem.close()
        return
    async with etcd_lab(tmp_path, 1) as lab:
        real = lab.store()
        try:
            yield real
        finally:
            await real.close()
