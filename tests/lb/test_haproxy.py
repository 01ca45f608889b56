"""The HAProxy driver against a real HAProxy 2.6 and real backends on 127.0.0.x."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from corral.drivers.base import DriverError
from corral.lb.config import Server
from corral.lb.runtime import RuntimeApiError
from tests.drivers.helpers import eventually
from tests.lb.conftest import Lab, make_service
from tests.lb.helpers import (
    BACKENDS,
    SPARE,
    VIPS,
    App,
    Load,
    Result,
    get,
    hits,
    make_spec,
    spec_text,
)


async def spread(lab: Lab, n: int = 30, vip: str = VIPS[0]) -> list[Result]:
    return [await get(vip, lab.port) for _ in range(n)]


async def all_up(lab: Lab) -> bool:
    states = await lab.service.runtime.servers()
    return all(s.operational == "up" for s in states.values())


async def test_serves_on_every_vip_and_health(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    for vip in VIPS:
        results = await spread(lab, 30, vip)
        assert all(r.status == 200 for r in results), results
        assert all(hits(results, h) > 0 for h in BACKENDS)  # round robin over all three
    health = await get(lab.node.address, lab.stats_port, "/health")
    assert health.status == 200
    assert (await lab.service.status()).state == "running"


async def test_stop_then_adopt_after_agent_restart(lab: Lab, short_dir: Path) -> None:
    pid = lab.service.pid_path.read_text()
    fresh = make_service(short_dir, lab.spec)  # the restarted agent's driver
    assert await fresh.adopt()
    status = await fresh.status()
    assert status.state == "running" and "adopted" in status.detail
    assert fresh.pid_path.read_text() == pid
    await fresh.stop()
    assert (await fresh.status()).state == "stopped"
    assert (await get(VIPS[0], lab.port)).status == 0  # nothing listens any more
    assert not await make_service(short_dir, lab.spec).adopt()
    await fresh.stop()  # idempotent


async def test_bad_config_change_is_refused_and_nothing_changes(lab: Lab) -> None:
    before = lab.service.config_path.read_bytes()
    procs = await lab.service.master.processes()
    with pytest.raises(DriverError, match="unknown keyword 'bogus'"):
        await lab.service.apply_config(before.decode() + "\nbackend x\n    bogus on\n")
    assert lab.service.config_path.read_bytes() == before
    assert await lab.service.master.processes() == procs  # no reload, same master and worker
    assert (await get(VIPS[0], lab.port)).status == 200


async def test_bad_template_is_refused_at_start(
    short_dir: Path, apps: tuple[list[App], int]
) -> None:
    _, backend_port = apps
    # a space in the check path ends up as a stray keyword in http-check send
    box = [make_spec(spec_text(8, backend_port, 9, url_path="/a b"))]
    service = make_service(short_dir, box)
    with pytest.raises(DriverError, match="haproxy -c refused"):
        await service.start()
    assert not service.config_path.exists()
    assert (await service.status()).state == "stopped"


async def test_maint_drain_ready(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    rt = lab.service.runtime
    for state in ("maint", "drain"):
        await rt.set_state("api", "n1", state)
        assert (await rt.servers())[("api", "n1")].admin == state
        results = await spread(lab)
        assert all(r.status == 200 for r in results)
        assert hits(results, BACKENDS[0]) == 0, state
    await rt.set_state("api", "n1", "ready")
    assert hits(await spread(lab), BACKENDS[0]) > 0
    with pytest.raises(RuntimeApiError, match="No such server"):
        await rt.set_state("api", "nope", "maint")
    with pytest.raises(RuntimeApiError, match="separator"):
        await rt.command("show info; shutdown frontend api")


async def test_backend_killed_under_load_no_failed_request(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    load = Load()
    task = asyncio.create_task(load.run(VIPS[0], lab.port, rate=200, seconds=2.0))
    await asyncio.sleep(0.5)
    lab.apps[1].kill(signal.SIGKILL)
    await task
    assert len(load.results) >= 200
    assert hits(load.results[:50], BACKENDS[1]) > 0  # it did take traffic before the kill
    assert load.failed == [], load.failed[:3]
    assert hits(load.results[-50:], BACKENDS[1]) == 0


async def test_planned_stop_through_drain_then_maint(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    load = Load()
    task = asyncio.create_task(load.run(VIPS[0], lab.port, rate=200, seconds=2.0))
    await asyncio.sleep(0.4)
    plan = await lab.service.set_servers({"api": {"n1": "ready", "n2": "ready", "n3": "drain"}})
    assert plan.commands == ("set server api/n3 state drain",)
    await asyncio.sleep(0.2)
    await lab.service.set_servers({"api": {"n1": "ready", "n2": "ready", "n3": "maint"}})
    lab.apps[2].kill(signal.SIGTERM)
    await task
    assert load.failed == [], load.failed[:3]


async def test_backend_answering_500_leaves_rotation_within_interval_times_fall(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    lab.apps[0].set_mode("500")
    started = time.monotonic()

    async def n1_down() -> bool:
        return (await lab.service.runtime.servers())[("api", "n1")].operational == "down"

    await eventually(n1_down, timeout=0.3 * 2 + 3.0, interval=0.05, what="n1 down")
    took = time.monotonic() - started
    print(f"n1 out of rotation {took:.2f}s after it began answering 500")
    results = await spread(lab)
    assert all(r.status == 200 for r in results) and hits(results, BACKENDS[0]) == 0
    assert took < 0.3 * 2 + 3.0


async def test_reload_on_structural_change_keeps_maint(lab: Lab) -> None:
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    await lab.service.runtime.set_state("api", "n2", "maint")
    workers = {p.pid for p in await lab.service.master.processes() if p.kind == "worker"}
    # a comment-only change does not reload
    assert not await lab.service.apply_config(lab.service.config_path.read_text() + "# note\n")
    lab.spec[0] = make_spec(spec_text(lab.port, lab.backend_port, lab.stats_port, maxconn=2000))
    assert await lab.service.apply_config(lab.service.render_config())
    procs = await lab.service.master.processes()
    new = {p.pid for p in procs if p.kind == "worker" and not p.old}
    assert new and not new & workers
    assert (await lab.service.runtime.servers())[("api", "n2")].admin == "maint"
    assert "maxconn 2000" in lab.service.config_path.read_text()
    results = await spread(lab)
    assert all(r.status == 200 for r in results) and hits(results, BACKENDS[1]) == 0


async def test_dynamic_add_and_delete_server(lab: Lab, short_dir: Path) -> None:
    spare = App(SPARE, lab.backend_port, short_dir / "mode-spare")
    spare.set_mode("ok")
    spare.start()
    try:
        extra = [
            Server(n, h, lab.backend_port)
            for n, h in zip(("n1", "n2", "n3", "n4"), (*BACKENDS, SPARE), strict=True)
        ]
        lab.service._servers_provider = lambda: {"api": extra}
        want = {"api": {"n1": "ready", "n2": "ready", "n3": "ready", "n4": "ready"}}
        plan = await lab.service.set_servers(want)
        assert not plan.reload_needed and plan.commands[0].startswith("add server api/n4")
        await eventually(lambda: all_up(lab), timeout=10, what="n4 up")
        assert hits(await spread(lab), SPARE) > 0
        del want["api"]["n4"]
        plan = await lab.service.set_servers(want)
        assert plan.commands[-1] == "del server api/n4"
        assert ("api", "n4") not in await lab.service.runtime.servers()
        assert hits(await spread(lab), SPARE) == 0
    finally:
        spare.kill()


async def test_haproxy_killed_is_reported_failed(lab: Lab) -> None:
    record = lab.service.pid_path.read_text()
    pid = int(record.split('"pid": ')[1].split(",")[0])
    os.killpg(pid, signal.SIGKILL)
    await eventually(lambda: _state_is(lab, "failed"), timeout=5, what="failed")
    await lab.service.start()  # a start after a crash starts a fresh one
    assert (await get(VIPS[0], lab.port)).status == 200


async def _state_is(lab: Lab, state: str) -> bool:
    return (await lab.service.status()).state == state


async def test_reload_uses_a_changed_server_address_not_the_saved_one(
    lab: Lab, short_dir: Path
) -> None:
    # the server-state file also holds addresses: a reload must still use the new config's
    await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
    spare = App(SPARE, lab.backend_port, short_dir / "mode-spare")
    spare.set_mode("ok")
    spare.start()
    try:
        moved = [
            Server("n1", SPARE, lab.backend_port),
            *(
                Server(n, h, lab.backend_port)
                for n, h in (("n2", BACKENDS[1]), ("n3", BACKENDS[2]))
            ),
        ]
        lab.service._servers_provider = lambda: {"api": moved}
        assert await lab.service.apply_config(lab.service.render_config())
        assert (await lab.service.runtime.servers())[("api", "n1")].address == SPARE
        await eventually(lambda: all_up(lab), timeout=10, what="all servers up")
        results = await spread(lab)
        assert hits(results, SPARE) > 0 and hits(results, BACKENDS[0]) == 0
    finally:
        spare.kill()
