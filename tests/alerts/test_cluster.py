"""Alerts through real agents (three, on loopback, over a real 3-member etcd): a node powered
off reaches Pacemaker's sample agent (a ``Fencing`` line and the resource lines of the
failover) and a webhook; ``corral alerts test`` and ``corral alerts log`` from the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.lab.hook import Hook
from corral.lab.loopback import NODES, Cluster
from corral.store import EtcdStore, Keys

pytestmark = pytest.mark.etcd
SAMPLE = Path("/usr/share/pacemaker/alerts/alert_file.sh.sample")
KEYS = Keys("agenttest")
TIMEOUT = 60.0  # generous: a shared, loaded machine


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Hook, Path]]:
    if not SAMPLE.exists():
        pytest.skip("pacemaker-common not installed (make install)")
    agent, out = tmp_path / "alert_file.sh", tmp_path / "alerts.log"
    agent.write_bytes(SAMPLE.read_bytes())  # the sample as shipped, made executable
    agent.chmod(0o755)
    hook = Hook().start()
    cluster = Cluster(tmp_path / "lab")
    cluster.add_alerts({
        "file": f"{{exec: {agent}, recipient: {out}, timeout: 10s}}",
        "hook": f'{{webhook: "{hook.url}", kinds: [fencing, node], backoff: 100ms}}',
    })  # fmt: skip
    try:
        await cluster.start()
        yield cluster, hook, out
    finally:
        await cluster.stop()
        hook.close()


async def until(check, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = await check() if asyncio.iscoroutinefunction(check) else check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {TIMEOUT:g}s")


def corral(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "corral.cli.main", *args]
    argv += ["--spec", str(c.spec_file), "--etcd", c.etcd_arg]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


async def test_a_powered_off_node_reaches_pacemakers_agent_and_a_webhook(
    lab: tuple[Cluster, Hook, Path],
) -> None:
    cluster, hook, out = lab
    store = EtcdStore(cluster.etcd.endpoints)
    try:

        async def controller() -> str:
            kv = await store.get(KEYS.controller)
            return kv.value.decode() if kv is not None else ""

        boss = str(await until(controller, "a controller"))
        # the CLI's test alert: it waits for the delivery, which also shows alerts are on
        test = corral(cluster, "alerts", "test", "file")
        assert test.returncode == 0 and "file delivered alert-test" in test.stdout, test
        assert "Node 'alert-test' is now 'test'" in out.read_text()
        await cluster.wait_settled(store, TIMEOUT)  # peers saw it alive: a lost node is fenced
        boss = str(await until(controller, "a controller"))
        victim = next(n for n in NODES if n != boss)
        cluster.power_off(victim)
        line = f"Fencing {victim} fenced by power"
        await until(lambda: out.exists() and line in out.read_text(), "the Fencing line")
        await until(lambda: [b for _, b, s in hook.posts if b.get("kind") == "fencing"], "hook")
        fenced = [b for _, b, s in hook.posts if s == 200 and b.get("kind") == "fencing"]
        assert fenced[0]["node"] == victim and fenced[0]["rc"] == 0
        assert fenced[0]["id"] == f"agenttest/hook/{fenced[0]['event']}"
        assert not [b for _, b, _ in hook.posts if b.get("kind") == "resource"]  # filtered

        def lost() -> list[str]:  # the controller's node event, delivered
            return [b["node"] for _, b, s in hook.posts
                    if s == 200 and b.get("kind") == "node" and b["desc"] == "lost"]  # fmt: skip

        assert await until(lost, "the node-lost alert") == [victim], hook.posts
        log = corral(cluster, "alerts", "log", "--json")
        rows = [json.loads(line) for line in log.stdout.splitlines()]
        assert {r["schema"] for r in rows} == {"corral.alert/1"}
        assert {"sink": "hook", "status": "delivered", "kind": "fence", "node": victim} in [
            {k: r[k] for k in ("sink", "status", "kind", "node")} for r in rows
        ]
    finally:
        await store.close()
