"""``corral alerts test SINK`` and ``POST /v1/actions/alert-test``: a test alert through the
real path. The action writes one ``alert-test`` event (its resource names the sink); the
controller makes it a duty for that sink only (past the sink's filters,
:func:`corral.core.alerts.wants`); the owner delivers it like any alert; the action waits
for the delivery's log record and returns it (``pending`` when ``timeout`` passed first).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from corral.actions.admin import Action, ActionError
from corral.core.alerts import TEST_KIND
from corral.records import Event
from corral.records.alerts import DeliveryRecord
from corral.spec import Spec
from corral.store import Keys, Store

TEST_NODE = "alert-test"  # the event key's writer: the test comes from no node


def alert_test(spec: Spec, sink: str, timeout: float = 30.0) -> Action:
    """The test alert; who asks (the action's ``by``) is named in the event's text."""
    if sink not in spec.alerts:
        known = ", ".join(spec.alerts) or "none in the spec"
        raise ActionError(f"no alert sink {sink!r} (known: {known})", "sink")
    if not 0 < timeout <= 600:
        raise ActionError(f"timeout must be in (0, 600] seconds, not {timeout}", "timeout")

    async def run(store: Store, by: str) -> dict[str, Any]:
        keys, now = Keys(spec.cluster), time.time()
        key = keys.event_key(int(now * 1e9), TEST_NODE)
        why = f"a test of alert sink {sink}" + (f" by {by}" if by else "")
        await store.put(key, Event(now, TEST_NODE, sink, TEST_KIND, why).dump())
        event_id = key.decode().rsplit("/", 1)[1]
        log_key = keys.alert_log(sink, event_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kv = await store.get(log_key)
            record = DeliveryRecord.parse(kv.value) if kv is not None else None
            if record is not None:
                return {"sink": sink, "event": event_id, **record.to_value()}
            await asyncio.sleep(0.2)
        return {"sink": sink, "event": event_id, "status": "pending"}

    return Action(f"alert test: {sink}", run, resource=sink)
