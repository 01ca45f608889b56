"""Three real agents on loopback over a real 3-member etcd, with real HTTP services.

Each test starts its own cluster (about 3 s) and checks what a user would see: which nodes
answer on a service's port, never two for an active-passive service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.lab.loopback import NODES, Cluster
from corral.spec.profiles import profile_timing

pytestmark = pytest.mark.etcd
TIMEOUT = 20.0

LAN_TTL = profile_timing("lan").lease_ttl


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        await c.start()
        await until(
            lambda: len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1,
            "web on 3 nodes and api on 1",
        )
        yield c
    finally:
        await c.stop()


async def until(check, what: str, timeout: float = TIMEOUT) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def corral(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "corral.cli.main",
            *args,
            "--spec",
            str(c.spec_file),
            "--etcd",
            c.etcd_arg,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_killed_agent_of_the_ap_holder_fails_over_never_two(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    cluster.kill_agent(holder)
    took = await watch_the_api_leave(cluster, holder)
    assert took < LAN_TTL + 0.5 + 3.0  # lease TTL + etcd expiry check + start and first check


async def test_killed_service_is_restarted(cluster: Cluster) -> None:
    pid = cluster.service_pid("n2", "web")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await until(
        lambda: (
            cluster.service_pid("n2", "web") not in (None, pid)
            and "n2" in cluster.serving(cluster.web_port)
        ),
        "web restarted on n2",
    )


async def test_service_answering_500_is_restarted(cluster: Cluster) -> None:
    mode = cluster.base / "web-n3.mode"
    mode.write_text("500")
    pid = cluster.service_pid("n3", "web")
    await until(lambda: cluster.service_pid("n3", "web") not in (None, pid), "web restarted")
    mode.write_text("ok")
    await until(lambda: "n3" in cluster.serving(cluster.web_port), "web healthy again on n3")
    events = corral(cluster, "events").stdout
    assert "web is unhealthy" in events and "HTTP 500" in events


async def test_hung_service_is_detected_and_recovered(cluster: Cluster) -> None:
    pid = cluster.service_pid("n1", "web")
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)
    await until(lambda: cluster.service_pid("n1", "web") not in (None, pid), "hung web replaced")
    await until(lambda: "n1" in cluster.serving(cluster.web_port), "web answers again on n1")


async def test_one_etcd_member_lost_nothing_moves(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    pids = {n: cluster.service_pid(n, "web") for n in NODES}
    cluster.etcd.members[0].kill()
    await asyncio.sleep(4)
    assert list(cluster.serving(cluster.api_port)) == [holder]
    assert {n: cluster.service_pid(n, "web") for n in NODES} == pids


async def test_etcd_lost_entirely_self_fences_exclusive_and_recovers(cluster: Cluster) -> None:
    web_pids = {n: cluster.service_pid(n, "web") for n in NODES}
    for member in cluster.etcd.members:
        member.kill()
    await until(lambda: not cluster.serving(cluster.api_port), "api self-fenced", 5)
    assert len(cluster.serving(cluster.web_port)) == 3  # active-active keeps serving
    assert {n: cluster.service_pid(n, "web") for n in NODES} == web_pids
    for member in cluster.etcd.members:
        await member.start(wait=False)
    await until(lambda: len(cluster.serving(cluster.api_port)) == 1, "api back after etcd")


async def test_bad_spec_pushed_is_refused_and_the_running_one_kept(cluster: Cluster) -> None:
    bad = cluster.base / "bad.yaml"
    bad.write_text(cluster.spec_file.read_text().replace("mode: active-passive", "mode: nope"))
    pushed = subprocess.run(
        [
            sys.executable,
            "-m",
            "corral.cli.main",
            "spec",
            "push",
            str(bad),
            "--etcd",
            cluster.etcd_arg,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert pushed.returncode == 1 and "nope" in pushed.stderr  # the CLI refuses it
    # pushed behind the CLI's back, straight into etcd: the agents refuse it too
    from corral.store import EtcdStore, Keys

    store = EtcdStore(cluster.etcd.endpoints)
    try:
        await store.put(Keys("agenttest").spec, bad.read_bytes())
    finally:
        await store.close()
    await until(lambda: "refused the spec" in corral(cluster, "events").stdout, "refusal event")
    assert len(cluster.serving(cluster.api_port)) == 1
    status = json.loads(corral(cluster, "status", "--json").stdout)
    assert status["resources"]["api"]["mode"] == "active-passive"


async def test_restarted_agent_adopts_its_running_services(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    node = next(n for n in NODES if n != holder)
    pid = cluster.service_pid(node, "web")
    cluster.kill_agent(node)
    await asyncio.sleep(2.0)  # longer than the lease TTL: the node looks gone for a moment
    cluster.start_agent(node)
    log = cluster.base / f"agent-{node}.log"
    await until(lambda: "adopted web" in log.read_text(), "the new agent adopts web")
    await asyncio.sleep(2)  # a few rounds later it still has not restarted it
    assert cluster.service_pid(node, "web") == pid
    assert node in cluster.serving(cluster.web_port)


async def test_controller_is_replaced_within_a_lease_ttl(cluster: Cluster) -> None:
    def controller() -> str | None:
        out = corral(cluster, "status", "--json").stdout
        return json.loads(out)["controller"] if out else None

    old = controller()
    assert old in NODES
    cluster.kill_agent(old)
    took = await until(lambda: controller() not in (None, old), "a new controller")
    assert took < LAN_TTL + 0.5 + 2.0  # lease TTL + etcd's expiry check + a campaign round


async def test_failing_ap_service_moves_after_migration_threshold(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    (cluster.base / f"api-{holder}.mode").write_text("500")  # broken on that node only
    await until(
        lambda: any(n != holder for n in cluster.serving(cluster.api_port)),
        "api moved after 3 failures",
        30,
    )
    status = json.loads(corral(cluster, "status", "--json").stdout)
    assert status["resources"]["api"]["failcounts"][holder] >= 3
    events = corral(cluster, "events", "-n", "200").stdout
    assert events.count("restart: its health checks fail") >= 2
    assert "3 failure(s) reached migration_threshold 3" in events


async def test_standby_drains_and_maintenance_freezes(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    assert corral(cluster, "standby", "on", holder).returncode == 0
    await until(
        lambda: (
            holder not in cluster.serving(cluster.web_port)
            and len(cluster.serving(cluster.api_port)) == 1
            and holder not in cluster.serving(cluster.api_port)
        ),
        "holder drained",
    )
    assert corral(cluster, "standby", "off", holder).returncode == 0
    await until(lambda: holder in cluster.serving(cluster.web_port), "web back on the node")
    # maintenance of web on one node: a crash there is left alone until maintenance ends
    node = next(n for n in NODES if n != holder)
    assert corral(cluster, "maintenance", "on", "--instance", f"web@{node}").returncode == 0
    await asyncio.sleep(1.5)
    pid = cluster.service_pid(node, "web")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await asyncio.sleep(3)
    assert node not in cluster.serving(cluster.web_port)
    assert corral(cluster, "maintenance", "off", "--instance", f"web@{node}").returncode == 0
    await until(lambda: node in cluster.serving(cluster.web_port), "web restarted after it")


async def test_gossip_sees_a_killed_agent_within_a_second_or_so(cluster: Cluster) -> None:
    def views() -> dict[str, list[dict[str, object]]]:
        out = corral(cluster, "members", "--json").stdout
        return json.loads(out)["members"] if out.strip() else {}

    await until(
        lambda: (
            len(views()) == 3
            and all(sum(m["state"] == "alive" for m in v) == 3 for v in views().values())
        ),
        "3 alive views",
    )
    table = corral(cluster, "members").stdout
    assert "seen by n1" in table and "alive (inc" in table
    cluster.kill_agent("n3")
    start = time.monotonic()
    # the survivors' views (published under their leases) hold n3 dead; n3's own is gone
    await until(
        lambda: all(
            any(m["name"] == "n3" and m["state"] == "dead" for m in views().get(n, []))
            for n in ("n1", "n2")
        ),
        "n3 dead in both survivors' views",
        10,
    )
    assert time.monotonic() - start < 5  # includes two CLI round trips per poll


async def test_state_dump_and_the_controller_inputs_replay_in_simulate(cluster: Cluster) -> None:
    """An incident becomes a golden case with one command: ``corral state dump`` writes the
    live cluster as a state file, the controller keeps its last inputs the same way (like
    Pacemaker's pe-input files), and ``corral simulate`` replays both."""
    dumped = corral(cluster, "state", "dump", "-o", str(cluster.base / "now.yaml"))
    assert dumped.returncode == 0, dumped.stderr
    text = (cluster.base / "now.yaml").read_text()
    assert text.startswith("# corral state dump of") and "api@" in text

    def replay(state: Path) -> subprocess.CompletedProcess[str]:
        return run_cli("simulate", str(cluster.spec_file), "--state", str(state))

    def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.cli.main", *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    steady = replay(cluster.base / "now.yaml")
    assert steady.returncode == 0, steady.stderr
    assert "Actions\n  (none)" in steady.stdout  # a steady cluster plans nothing
    inputs = sorted(
        p for n in NODES for p in (cluster.state_dir(n) / "controller-inputs").glob("input-*.yaml")
    )
    assert inputs, "the controller kept no input"
    first = replay(inputs[0])  # the first transition: what the controller planned then
    assert first.returncode == 0, first.stderr
    assert "start " in first.stdout and "plan:" in inputs[0].read_text()
    bad = run_cli("state", "dump", "--spec", str(cluster.spec_file), "--etcd", "http://127.0.0.1:1")
    assert bad.returncode != 0 and "cannot read the store" in bad.stderr


async def watch_the_api_leave(cluster: Cluster, holder: str, timeout: float = TIMEOUT) -> float:
    """Once ``holder`` lost its agent: the seconds until the api answers elsewhere; asserts it
    never answers on two nodes at once meanwhile."""
    start = time.monotonic()
    seen_two = []
    while time.monotonic() - start < timeout:
        answering = cluster.serving(cluster.api_port)
        if len(answering) > 1:
            seen_two.append(sorted(answering))
        if answering and holder not in answering:
            break
        await asyncio.sleep(0.02)
    took = time.monotonic() - start
    assert not seen_two, (
        f"api answered on two nodes at once ({len(seen_two)} samples): {seen_two[:3]}"
    )
    answering = cluster.serving(cluster.api_port)
    assert answering and holder not in answering, "api did not move"
    return took


async def test_a_restarted_agent_takes_its_lease_back_and_moves_nothing(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    pid = cluster.service_pid(holder, "api")
    cluster.stop_agent(holder)  # SIGTERM: the lease goes to the guard
    start, gaps, elsewhere = time.monotonic(), 0, []
    while time.monotonic() - start < 2 * LAN_TTL + 1:  # longer than a lease: nobody renews
        answering = cluster.serving(cluster.api_port)  # it but the guard
        gaps += holder not in answering
        elsewhere += [n for n in answering if n != holder]
        await asyncio.sleep(0.05)
    cluster.start_agent(holder)
    log = cluster.base / f"agent-{holder}.log"
    await until(lambda: "took over lease" in log.read_text(), "the new agent takes the lease")
    await asyncio.sleep(2 * LAN_TTL)  # the guard stopped renewing; the agent renews
    assert gaps == 0 and not elsewhere, f"api left {holder}: gaps {gaps}, on {elsewhere}"
    assert cluster.serving(cluster.api_port).keys() == {holder}
    assert cluster.service_pid(holder, "api") == pid, "the api service was restarted"
    guard_log = (cluster.state_dir(holder) / "guard.log").read_text()
    assert "renewing lease" in guard_log and "lease deadline passed" not in guard_log


async def test_an_agent_that_never_comes_back_fails_over_after_its_window(
    cluster: Cluster,
) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    cluster.stop_agent(holder)
    cluster.start_agent(holder, "--handover-window", "3")
    log = cluster.base / f"agent-{holder}.log"
    await until(lambda: "took over lease" in log.read_text(), "the new agent takes the lease")
    cluster.stop_agent(holder)  # and it never comes back
    took = await watch_the_api_leave(cluster, holder, timeout=3 + LAN_TTL + 10)
    assert took > 3, "the api moved before the handover window ended"
    guard_log = (cluster.state_dir(holder) / "guard.log").read_text()
    assert "lease deadline passed: stopped exclusive api" in guard_log


async def test_a_dead_guard_is_started_again_and_guards(cluster: Cluster) -> None:
    (holder,) = cluster.serving(cluster.api_port)
    pidfile = cluster.state_dir(holder) / "guard.pid"
    old = int(pidfile.read_text())
    os.kill(old, signal.SIGKILL)
    guard_log = cluster.state_dir(holder) / "guard.log"

    def new_guard_ready() -> bool:
        pid = int(pidfile.read_text())
        if pid == old or not guard_log.exists():  # the new guard writes the log's first line
            return False
        return f"guard {pid} ready" in guard_log.read_text()

    await until(new_guard_ready, "the agent starts a new lease guard")
    cluster.kill_agent(holder)  # now only the new guard can stop the api here (rule 1)
    await watch_the_api_leave(cluster, holder)
