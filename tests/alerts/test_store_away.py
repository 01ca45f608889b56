"""Alert deliveries while etcd is away (a real etcd, stopped and started again): the agent
keeps its last view of the duties, nothing crashes, a delivery whose settle cannot be written
is not sent again in a loop (the receiver sees at most one more try per backoff), and once
etcd is back the duty is settled and logged exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corral.lab.hook import Hook
from corral.records.alerts import read_alert_state, read_deliveries
from corral.store.lab import etcd_lab
from tests.alerts.test_delivery import KEYS, Peer, event, spec_for, until_delivered

pytestmark = pytest.mark.etcd


async def test_a_delivery_while_etcd_is_away_is_not_resent_in_a_loop(tmp_path: Path) -> None:
    hook = Hook(fail_first=1).start()
    async with etcd_lab(tmp_path, 1) as lab, lab.client(timeout=1.0, attempt_timeout=0.3) as store:
        try:
            a = Peer(store, "a", spec_for(hook.url))
            await a.register()
            await a.lead()
            await a.step()  # the cursor: alerts from now on
            fenced = await event(store, "a", "fence", "b fenced by ipmi (off, 0.1s): lost", at="b")
            await a.step()  # the duty written, its first try answered 500, a retry recorded
            a.view.load(await store.range(KEYS.root_prefix))  # the view the agent keeps
            state = read_alert_state(KEYS, a.view.kvs())
            assert [(d.sink, d.duty.tried) for d in state.duties if d.sink == "hook"] == [
                ("hook", 1)
            ], "the first try failed and its retry is recorded"
            await lab.stop()
            away = time.monotonic()
            while time.monotonic() - away < 1.5:  # the agent goes on with its last view
                await a.duty.step()
                await a.duty.drain()
                await asyncio.sleep(0.01)
            tries = [b for _, b, s in hook.posts if b.get("event") == fenced and s == 200]
            # the retry was sent (a 200) but its settle could not be written; sending it again
            # at every wake would hammer the receiver: at most one more try per max_backoff
            assert 1 <= len(tries) <= 1 + int(1.5 / 0.2) + 1, len(tries)
            await lab.start()
            logs = await until_delivered(store, [a], 2)  # hook delivered, hang failed
            hooked = [(s, e, st) for s, e, st in logs if s == "hook"]
            assert hooked == [("hook", fenced, "delivered")]
            records = read_deliveries(KEYS, (await store.range(KEYS.root_prefix)).kvs)
            assert sum(1 for s, e, _ in records if (s, e) == ("hook", fenced)) == 1
        finally:
            hook.close()
