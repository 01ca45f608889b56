"""`make demo` runs `corral demo`: the example control plane in the lab, a failover tour, and
`corral demo-down` that leaves nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli.main import cli
from corral.lab import netns, procs
from corral.lab.lab import ns_prefix
from corral.lab.servers import installed

ROOT = Path(__file__).resolve().parents[1]
NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("haproxy") is None,
    reason="needs root and HAProxy (network namespaces)",
)


def corral(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


REAL = all(not installed(kind) for kind in ("galera", "rabbitmq"))


def _servers(prefix: str) -> list[int]:
    """The pids of the lab's database and broker processes (with their epmd)."""
    names = {"mariadbd", "beam.smp", "epmd", "erl_child_setup"}
    found = []
    for ns in netns.list_namespaces(prefix):
        for pid in netns.pids(ns):
            proc = procs.read_proc(pid)
            if proc is not None and proc.argv and Path(proc.argv[0]).name in names:
                found.append(pid)
    return found


@NEEDS_ROOT
@pytest.mark.timeout(400)  # about 90 s on a quiet machine, 2-3 min on a loaded one
def test_demo_tours_a_failover_and_demo_down_cleans_up() -> None:
    """The whole demo, on the real MariaDB Galera and RabbitMQ when they are installed (as
    `make test` does): the database keeps every acknowledged write through the power-off,
    the quorum queue every confirmed message; demo-down ends every server and epmd."""
    lab_dir = Path(tempfile.mkdtemp(prefix="crld-", dir="/tmp")) / "lab"
    lab_dir.parent.chmod(0o755)  # mariadbd's own user (mysql) enters the lab's servers dir
    prefix = ns_prefix(lab_dir)
    started: list[int] = []
    try:
        done = corral("demo", "examples/openstack.yaml", "--dir", str(lab_dir))
        out = done.stdout
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "cluster cloud1: 3 nodes, 11 resources" in out
        assert "every VIP held and every instance healthy" in out
        assert "powered off (link down, every process killed)" in out
        assert "VIP 198.18.0.100 is up on" in out  # ctl1's VIP moved
        assert "holds 198.18.0.100 and runs cinder-volume (active-passive)" in out
        assert "started cinder-volume: assigned to this node" in out  # on another node
        assert "served again" in out
        # fenced, unless its lease ran out first (a controller that was slow to take over)
        assert "fenced by lab" in out or "ctl1 is unclean" in out or "became the controller" in out
        assert "rejoined and its VIP failed back home" in out
        assert "make demo-down" in out
        assert netns.list_namespaces(prefix), "the demo leaves the cluster running"
        flat = " ".join(out.split())  # rich wraps long lines
        if REAL:
            assert "galera: the real server in every node's namespace" in flat
            assert re.search(r"database: \d+ writes acknowledged", flat), flat[-3000:]
            assert "; 0 acknowledged writes lost" in flat
            kept = re.search(r"queue demo-orders: (\d+) of (\d+) confirmed messages kept", flat)
            assert kept and kept[1] == kept[2] and int(kept[2]) > 0, flat[-3000:]
            started = _servers(prefix)
            assert len(started) >= 9  # 3 x mariadbd, beam.smp, epmd
        else:
            assert "HTTP stand-in: the server is not installed" in flat
    finally:
        down = corral("demo-down", "--dir", str(lab_dir), timeout=120)
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert netns.list_namespaces(prefix) == []
    alive = [p for p in started if (proc := procs.read_proc(p)) is not None and proc.alive]
    assert alive == []  # a zombie is ended (this machine's pid 1 may never reap it)
    assert not list(Path("/etc/netns").glob(f"{prefix}*"))  # the Erlang names' hosts files


def test_demo_refuses_a_bad_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: x\n")
    result = CliRunner().invoke(cli, ["demo", str(bad), "--dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "nodes" in result.output


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs setpriv")
def test_demo_as_a_normal_user_says_it_needs_root() -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "corral.cli.main",
            "demo",
            "examples/openstack.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "HOME": "/tmp"},
    )
    assert done.returncode == 1
    assert "run it as root" in done.stderr
