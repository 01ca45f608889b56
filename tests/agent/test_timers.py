"""The agent's timers on a real event loop with an in-memory store: renewals every
``keepalive_interval`` on the timer grid, a failed renewal retried a tick later (not an
interval later), and the lease kept across a store outage shorter than the self-fence window."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from pathlib import Path

from corral.agent.node import Agent
from corral.drivers import make_driver
from corral.health.checks import run_check
from corral.spec import load_spec_text
from corral.store import MemoryStore

SPEC = "cluster: t\nstore: {etcd: {endpoints: [http://127.0.0.1:1]}}\nnodes:\n  n1: {address: 127.0.0.1}\n"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[tuple[float, float, bool]] = []  # (monotonic, wall, succeeded)

    async def keepalive(self, lease_id: int) -> int:
        stamp = (time.monotonic(), time.time())
        try:
            ttl = await super().keepalive(lease_id)
        except Exception:
            self.renewals.append((*stamp, False))
            raise
        self.renewals.append((*stamp, True))
        return ttl


async def test_renewals_keep_their_interval_on_the_grid_and_retry_a_tick_after_a_failure(
    tmp_path: Path,
) -> None:
    spec = load_spec_text(SPEC)
    interval = spec.effective_timing.keepalive_interval
    store = CountingStore()
    agent = Agent(
        spec, "n1", store, state_dir=tmp_path, driver_factory=make_driver, checker=run_check
    )
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(2.6)
        ok = [r for r in store.renewals if r[2]]
        expected = 2.6 / interval  # about one per interval (0.4 s on lan), not one per tick
        assert 0.6 * expected <= len(ok) <= 1.3 * expected, store.renewals
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(ok)]
        assert all(interval - 0.06 < g < interval + 0.25 for g in gaps), gaps
        # on whole tenths of the wall clock, timer lateness aside (a random phase would put
        # the median offset anywhere in 0-50 ms)
        offsets = sorted(abs((wall + 0.05) % 0.1 - 0.05) for _, wall, _ in ok)
        assert statistics.median(offsets) < 0.02, offsets

        store.set_available(False)  # no renewal succeeds for 0.8 s
        outage = len(store.renewals)
        await asyncio.sleep(0.8)
        failed = [r for r in store.renewals[outage:] if not r[2]]
        assert len(failed) >= 4, failed  # retried every tick, not every interval
        store.set_available(True)
        await asyncio.sleep(0.4)
        assert store.renewals[-1][2]  # renewed again at once
        assert agent.may_hold_exclusive()  # 0.8 s < lease_ttl - safety_margin: lease kept
        assert agent.lease is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
