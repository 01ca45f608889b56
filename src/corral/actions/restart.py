"""Restart a service through its agents: each node's agent gets a request
(``requests/<node>/<resource>``); it drains the instance from every HAProxy, stops it, starts it
and deletes the request. ``rolling`` goes node by node and waits, before the next node, until
the restarted instance is healthy again and every HAProxy has it back in rotation: at most one
node's instance is out at a time. Without it every node is asked at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from corral.actions.admin import Action, ActionError, ActionFailed, resource_of
from corral.records import AssignRecord, LbRecord, RequestRecord, StatusRecord
from corral.spec import Spec
from corral.store import Keys, Store


def restart(
    spec: Spec,
    name: str,
    rolling: bool = False,
    timeout: float = 60.0,
    say: Callable[[str], None] = lambda text: None,
) -> Action:
    """``timeout``: seconds per node; ``say``: progress, one line per node."""
    name = resource_of(spec, name, "name")
    if spec.resources[name].kind not in ("process", "systemd", "ocf", "haproxy"):
        raise ActionError(f"{name} is a {spec.resources[name].kind}: nothing to restart", "name")
    if not 0 < timeout <= 3600:
        raise ActionError(f"timeout must be in (0, 3600] seconds, not {timeout}", "timeout")

    async def run(store: Store, by: str) -> list[str]:
        return await _restart(spec, store, name, rolling, timeout, say)

    return Action(f"restart{' --rolling' if rolling else ''}: {name}", run, resource=name)


async def _restart(
    spec: Spec, store: Store, name: str, rolling: bool, timeout: float, say: Callable[[str], None]
) -> list[str]:
    keys = Keys(spec.cluster)
    kv = await store.get(keys.assign(name))
    assigned = AssignRecord.parse(kv.value) if kv else None
    nodes = sorted(set(assigned.nodes if assigned else []), key=list(spec.nodes).index)
    if not nodes:
        raise ActionFailed(f"{name} is not assigned anywhere: nothing to restart")
    done = []
    for batch in [[n] for n in nodes] if rolling else [nodes]:
        started = time.monotonic()
        for node in batch:
            request = RequestRecord(RequestRecord.RESTART, uuid.uuid4().hex)
            await store.put(keys.request(node, name), request.dump())
        for node in batch:
            await _wait_back(store, keys, name, node, started + timeout)
            done.append(node)
            say(f"{name} on {node}: restarted, healthy and back in rotation")
    return done


async def _wait_back(store: Store, keys: Keys, name: str, node: str, deadline: float) -> None:
    """Until the request is done, the instance healthy and every HAProxy has it ready."""
    while True:
        done = await store.get(keys.request(node, name)) is None
        status = await store.get(keys.status(node, name))
        reported = StatusRecord.parse(status.value) if status else None
        instances = reported.instances if reported else ()
        healthy = bool(instances) and instances[0].health == "healthy"
        states = []
        for kv in (await store.range(keys.prefix("lb"))).kvs:
            record = LbRecord.parse(kv.value)
            if record is not None and name in record.servers:
                states.append(record.servers[name].get(node))
        balanced = all(s == "ready" for s in states)
        if done and healthy and balanced:
            return
        if time.monotonic() > deadline:
            await store.delete(keys.request(node, name))  # not to run whenever it comes back
            what = (
                "the agent did not take the request"
                if not done
                else ("not healthy again" if not healthy else "not back in every load balancer")
            )
            raise ActionFailed(f"{name} on {node}: {what} in time; stopping here")
        await asyncio.sleep(0.05)
