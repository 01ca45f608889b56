"""The OCF driver against real resource agents (Debian ``resource-agents``) and a scripted one.

``ocf:heartbeat:Dummy``, ``ocf:heartbeat:anything`` (a real process) and
``ocf:heartbeat:Stateful`` (promote/demote) come from the Debian package. A small agent
written by the test into its own OCF root covers what the packaged ones cannot be made to do
on demand: hang, exit with any code, show the environment it was given.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers import OcfAgent
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.ocf import DEFAULT_OCF_ROOT, monitor_status
from corral.spec.model import OcfDriver as OcfSpec
from corral.spec.secrets import SecretRef

from .helpers import alive, eventually, kill_quietly

HEARTBEAT = DEFAULT_OCF_ROOT / "resource.d" / "heartbeat"
needs_agents = pytest.mark.skipif(
    not (HEARTBEAT / "Dummy").exists(),
    reason="OCF agents are not installed (Debian package 'resource-agents')",
)

SCRIPTED = r"""#!/bin/sh
# A minimal OCF agent for tests; its behaviour is chosen by parameters.
case "$1" in
meta-data) cat <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="scripted" version="1.0">
<parameters>
<parameter name="state" required="1"><content type="string"/></parameter>
<parameter name="monitor_rc"><content type="integer"/></parameter>
<parameter name="monitor_sleep"><content type="integer" default="0"/></parameter>
<parameter name="start_sleep"><content type="integer" default="0"/></parameter>
<parameter name="env_dump"><content type="string"/></parameter>
<parameter name="password"><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="1s"/>
<action name="stop" timeout="5s"/>
<action name="monitor" timeout="2s" interval="10s"/>
<action name="monitor" timeout="3s" interval="5s" role="Promoted"/>
<action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
EOF
  exit 0;;
start)
  [ -z "$OCF_RESKEY_env_dump" ] || env | grep '^OCF_' | sort > "$OCF_RESKEY_env_dump"
  sleep "${OCF_RESKEY_start_sleep:-0}"
  touch "$OCF_RESKEY_state"; exit 0;;
stop) rm -f "$OCF_RESKEY_state"; exit 0;;
monitor)
  sleep "${OCF_RESKEY_monitor_sleep:-0}"
  if [ -n "$OCF_RESKEY_monitor_rc" ]; then echo "monitor says $OCF_RESKEY_monitor_rc${OCF_RESKEY_password:+ (as $OCF_RESKEY_password)}" >&2; exit "$OCF_RESKEY_monitor_rc"; fi
  [ -f "$OCF_RESKEY_state" ] && exit 0; exit 7;;
*) exit 3;;
esac
"""


@pytest.fixture
def node(tmp_path: Path) -> NodeContext:
    return NodeContext("n1", "127.0.0.1", {"zone": "z9"}, state_dir=tmp_path / "state")


@pytest.fixture
def scripted_root(tmp_path: Path) -> Path:
    root = tmp_path / "ocf"
    agent = root / "resource.d" / "test" / "scripted"
    agent.parent.mkdir(parents=True)
    agent.write_text(SCRIPTED)
    agent.chmod(0o755)
    return root


def agent(name: str, spec: str, node: NodeContext, **params: str | int | bool) -> OcfAgent:
    return OcfAgent(name, OcfSpec(agent=spec, params=params), node)


def scripted(root: Path, node: NodeContext, tmp_path: Path, **params: str | int | bool) -> OcfAgent:
    spec = OcfSpec(agent="test:scripted", params={"state": str(tmp_path / "s.state"), **params})
    return OcfAgent("sc", spec, node, ocf_root=root)


# --- ocf:heartbeat:Dummy --------------------------------------------------------------------


@needs_agents
async def test_dummy_lifecycle_and_adoption(node: NodeContext, tmp_path: Path) -> None:
    state = tmp_path / "dummy.state"
    d = agent("dummy", "heartbeat:Dummy", node, state=str(state), fake="{node.name}")
    assert (await d.status()).state == "stopped"
    assert not await d.adopt()
    await d.start()
    assert state.exists()
    assert (await d.status()).state == "running"
    assert await agent("dummy", "heartbeat:Dummy", node, state=str(state)).adopt()
    await d.stop()
    assert not state.exists()
    assert (await d.status()).state == "stopped"
    await d.stop()  # idempotent
    meta = await d.metadata()
    assert d.timeout("start") == 20.0 and meta.timeouts["meta-data"] == 5.0  # from meta-data
    assert "start: rc 0 (OCF_SUCCESS)" in d.log_path.read_text()


@needs_agents
async def test_unknown_parameter_is_refused_with_the_known_ones(
    node: NodeContext, tmp_path: Path
) -> None:
    d = agent("dummy", "heartbeat:Dummy", node, state=str(tmp_path / "s"), colour="blue")
    with pytest.raises(
        DriverError, match=r"unknown parameter\(s\) colour \(the agent takes: fake, state\)"
    ):
        await d.start()
    st = await d.status()
    assert st.state == "failed" and "colour" in st.detail
    assert not (tmp_path / "s").exists()  # the agent never ran start


@needs_agents
async def test_agent_not_installed(node: NodeContext) -> None:
    d = agent("ghost", "heartbeat:NoSuchAgent", node)
    with pytest.raises(DriverError, match=r"ocf:heartbeat:NoSuchAgent is not installed"):
        await d.start()
    st = await d.status()
    assert st.state == "stopped" and "not installed" in st.detail
    await d.stop()  # nothing can run through it: stopped already
    assert not await d.adopt()
    with pytest.raises(DriverError, match="not installed"):
        await d.promote()


# --- ocf:heartbeat:anything: a real process ------------------------------------------------------


@pytest.fixture
def anything_pidfile(tmp_path: Path) -> Iterator[Path]:
    pidfile = tmp_path / "anything.pid"
    yield pidfile
    if pidfile.exists() and pidfile.read_text().strip().isdigit():
        kill_quietly(int(pidfile.read_text()))


@needs_agents
async def test_anything_runs_monitors_and_stops_a_process(
    node: NodeContext, anything_pidfile: Path
) -> None:
    d = agent(
        "sleeper",
        "heartbeat:anything",
        node,
        binfile="/bin/sleep",
        cmdline_options="300",
        pidfile=str(anything_pidfile),
    )
    await d.start()
    pid = int(anything_pidfile.read_text())
    assert alive(pid)
    assert (await d.status()).state == "running"
    await d.stop()
    assert not alive(pid)
    assert (await d.status()).state == "stopped"


@needs_agents
async def test_anything_monitor_of_a_killed_process_is_failed(
    node: NodeContext, anything_pidfile: Path
) -> None:
    d = agent(
        "sleeper",
        "heartbeat:anything",
        node,
        binfile="/bin/sleep",
        cmdline_options="300",
        pidfile=str(anything_pidfile),
    )
    await d.start()
    os.kill(int(anything_pidfile.read_text()), signal.SIGKILL)

    async def failed() -> bool:
        return (await d.status()).state == "failed"

    # The orphan is a zombie until PID 1 reaps it; the agent's `kill -0` sees it till then.
    await eventually(failed, timeout=20, interval=0.2, what="monitor reports the death")
    assert "rc 1 (OCF_ERR_GENERIC)" in (await d.status()).detail
    await d.stop()
    assert (await d.status()).state == "stopped"


@needs_agents
async def test_anything_without_required_binfile(node: NodeContext, tmp_path: Path) -> None:
    d = agent("broken", "heartbeat:anything", node, pidfile=str(tmp_path / "p"))
    with pytest.raises(DriverError, match=r"missing required parameter\(s\) binfile"):
        await d.start()
    assert not (tmp_path / "p").exists()


# --- ocf:heartbeat:Stateful: promote and demote ----------------------------------------------


@needs_agents
async def test_stateful_promote_demote_and_stop_while_promoted(
    node: NodeContext, tmp_path: Path
) -> None:
    state = tmp_path / "stateful.state"
    d = agent("db", "heartbeat:Stateful", node, state=str(state))
    await d.start()
    st = await d.status()
    assert st.state == "running" and not st.promoted
    await d.promote()
    st = await d.status()
    assert st.state == "running" and st.promoted
    await d.demote()
    assert not (await d.status()).promoted
    await d.promote()
    await d.stop()  # Stateful refuses to stop while promoted: the driver demotes first
    assert (await d.status()).state == "stopped"
    assert not state.exists()


@needs_agents
async def test_promote_of_an_agent_without_roles_is_refused(
    node: NodeContext, tmp_path: Path
) -> None:
    d = agent("dummy", "heartbeat:Dummy", node, state=str(tmp_path / "s"))
    with pytest.raises(DriverError, match="has no promote action"):
        await d.promote()


# --- a scripted agent: environment, exit codes, timeouts ----------------------------------------


async def test_environment_given_to_the_agent(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    dump = tmp_path / "env"
    d = scripted(scripted_root, node, tmp_path, env_dump=str(dump))
    await d.start()
    env = dict(line.split("=", 1) for line in dump.read_text().splitlines())
    assert env["OCF_ROOT"] == str(scripted_root)
    assert env["OCF_RESOURCE_INSTANCE"] == "sc"
    assert env["OCF_RESOURCE_TYPE"] == "scripted" and env["OCF_RESOURCE_PROVIDER"] == "test"
    assert env["OCF_RESKEY_state"] == str(tmp_path / "s.state")
    assert env["OCF_RESKEY_CRM_meta_timeout"] == "1000"  # start timeout="1s" from meta-data
    assert d.timeout("monitor") == 3.0  # the largest monitor timeout listed


async def test_parameters_are_rendered_for_the_node(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    d = scripted(
        scripted_root, node, tmp_path, env_dump=str(tmp_path / "{node.name}-{node.zone}.env")
    )
    await d.start()
    assert (tmp_path / "n1-z9.env").exists()


@pytest.mark.parametrize(
    ("rc", "state", "promoted", "name"),
    [
        (0, "running", False, ""),
        (7, "stopped", False, ""),
        (8, "running", True, "promoted"),
        (1, "failed", False, "OCF_ERR_GENERIC"),
        (2, "failed", False, "OCF_ERR_ARGS"),
        (5, "failed", False, "OCF_ERR_INSTALLED"),
        (6, "failed", False, "OCF_ERR_CONFIGURED"),
        (9, "failed", True, "OCF_FAILED_PROMOTED"),
        (42, "failed", False, "not an OCF code"),
    ],
)
async def test_monitor_exit_codes(
    scripted_root: Path,
    node: NodeContext,
    tmp_path: Path,
    rc: int,
    state: str,
    promoted: bool,
    name: str,
) -> None:
    st = await scripted(scripted_root, node, tmp_path, monitor_rc=rc).status()
    assert (st.state, st.promoted) == (state, promoted)
    assert name in st.detail
    if state == "failed":
        assert f"monitor says {rc}" in st.detail  # the agent's own words reach the operator


async def test_start_timeout_from_meta_data_kills_and_cleans_up(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    d = scripted(scripted_root, node, tmp_path, start_sleep=30)
    t0 = time.monotonic()
    with pytest.raises(DriverError, match=r"start timed out after 1s; stopped it again"):
        await d.start()
    assert time.monotonic() - t0 < 10
    assert (await d.status()).state == "stopped"


async def test_hung_monitor_is_failed_not_a_hang(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    spec = OcfSpec(
        agent="test:scripted", params={"state": str(tmp_path / "s"), "monitor_sleep": 30}
    )
    d = OcfAgent("sc", spec, node, ocf_root=scripted_root, timeouts={"monitor": 0.5})
    t0 = time.monotonic()
    st = await d.status()
    assert st.state == "failed" and "monitor timed out after 0.5s" in st.detail
    assert time.monotonic() - t0 < 10


async def test_failed_start_reports_rc_and_output(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    d = scripted(scripted_root, node, tmp_path, monitor_rc=1)  # start "works", monitor says no
    with pytest.raises(
        DriverError, match=r"start returned 0 but monitor says failed.*monitor says 1"
    ):
        await d.start()


async def test_a_secret_parameter_reaches_the_agent_only(
    scripted_root: Path, node: NodeContext, tmp_path: Path
) -> None:
    secret, dump = tmp_path / "db.pw", tmp_path / "env"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    params = {"state": str(tmp_path / "s"), "env_dump": str(dump), "monitor_rc": 1}
    spec = OcfSpec(agent="test:scripted", params={**params, "password": {"file": str(secret)}})
    assert spec.params["password"] == SecretRef(file=str(secret))
    d = OcfAgent("sc", spec, node, ocf_root=scripted_root)
    with pytest.raises(DriverError) as caught:  # the agent's complaint quotes the password
        await d.start()
    assert "OCF_RESKEY_password=hunter2" in dump.read_text()
    assert "monitor says 1 (as <redacted>)" in str(caught.value)
    status = await d.status()
    assert status.state == "failed" and "monitor says 1 (as <redacted>)" in status.detail
    assert "hunter2" not in d.log_path.read_text() + str(caught.value) + status.detail
    secret.chmod(0o644)  # unreadable now: the monitor fails, saying why
    status = await d.status()
    assert status.state == "failed" and f"{secret} has mode 0644" in status.detail


def test_bad_agent_names_and_parameter_names(node: NodeContext) -> None:
    with pytest.raises(DriverError, match="not an OCF agent name"):
        OcfAgent("x", OcfSpec(agent="..:Dummy"), node)
    with pytest.raises(DriverError, match="identifiers"):
        OcfAgent("x", OcfSpec(agent="heartbeat:Dummy", params={"a-b": "1"}), node)


def test_monitor_status_mapping_is_total() -> None:
    for rc in range(-9, 256):
        assert monitor_status(rc).state in ("running", "stopped", "failed")
