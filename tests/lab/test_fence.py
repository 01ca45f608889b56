"""The lab fence device speaks the fence-agents stdin protocol against a real lab."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.lab import netns
from corral.lab.fence import FenceError, parse_request
from corral.lab.lab import Lab

from .conftest import NEEDS_ROOT, wait_for


def fence(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.lab.fence"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- the request, pure -----------------------------------------------------------------------


def test_request_lines_aliases_comments_and_defaults() -> None:
    req = parse_request("# from corral\noption=off\nport=n2\n\nlab_dir=/x\nnodename=n1\n")
    assert (req.action, req.plug, req.lab_dir) == ("off", "n2", "/x")
    assert req.notes == ["Parse error: Ignoring unknown option 'nodename'"]
    assert parse_request("plug=n1\nlab_dir=/x\n").action == "reboot"  # fence-agents' default
    assert parse_request("action=status\nplug=n1\nlab_dir=/x", ["--plug=n2"]).plug == "n2"
    assert parse_request("action=metadata\n").lab_dir is None


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("action=destroy\nplug=n1\nlab_dir=/x\n", "Unrecognised action 'destroy'"),
        ("action=off\nlab_dir=/x\n", "enter plug"),
        ("action=status\nplug=\nlab_dir=/x\n", "enter plug"),
        ("action=off\nplug=n1\n", "lab_dir"),
    ],
)
def test_bad_requests_are_refused(stdin: str, message: str) -> None:
    with pytest.raises(FenceError, match=message):
        parse_request(stdin)


def test_metadata_and_no_lab() -> None:
    meta = fence("action=metadata\n")
    assert meta.returncode == 0 and '<resource-agent name="fence_lab"' in meta.stdout
    gone = fence("action=status\nplug=n1\nlab_dir=/nonexistent/lab\n")
    assert gone.returncode == 1 and "Failed:" in gone.stderr and "no lab" in gone.stderr


# --- on a real lab ---------------------------------------------------------------------------


def test_the_fence_agent_imports_no_heavy_library() -> None:
    """Every fence the lab performs starts this module: importing cryptography, pydantic or
    the etcd client (0.4 s on 2 cores) delayed every lab failover (found by bench/failover.py
    after the TLS merge). Checked by what is imported, not by a timing."""
    probe = "import sys, corral.lab.fence; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = set(done.stdout.split())
    assert done.returncode == 0, done.stderr
    assert not loaded & {"cryptography", "pydantic", "aetcd", "grpc", "yaml", "corral.spec"}


@pytest.mark.etcd
@NEEDS_ROOT
def test_off_status_on_against_a_real_lab(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("labfence")
    d = f"lab_dir={lab.dir}\n"

    status = fence(f"action=status\nplug=n2\n{d}")
    assert (status.returncode, status.stdout) == (0, "Status: ON\n")
    listed = fence(f"action=list\n{d}")
    assert (listed.returncode, listed.stdout) == (0, "n1,\nn2,\nn3,\n")
    assert fence(f"action=monitor\n{d}").returncode == 0

    off = fence(f"action=off\nplug=n2\n{d}")
    assert (off.returncode, off.stdout) == (0, "Success: Powered OFF\n"), off.stderr
    assert netns.pids(lab.node("n2")["ns"]) == []
    assert lab.status()["nodes"]["n2"]["link"] == "down"
    status = fence(f"action=status\nplug=n2\n{d}")
    assert (status.returncode, status.stdout) == (2, "Status: OFF\n")
    assert fence(f"action=off\nplug=n2\n{d}").returncode == 0  # off again: fine

    on = fence(f"action=on\nplug=n2\n{d}")
    assert (on.returncode, on.stdout) == (0, "Success: Powered ON\n"), on.stderr
    assert fence(f"action=status\nplug=n2\n{d}").returncode == 0
    lab.wait_online(["n2"], timeout=40)

    for stdin, message in [
        (f"action=explode\nplug=n2\n{d}", "Unrecognised action"),
        (f"action=off\nplug=n7\n{d}", "plug is not available"),
        (f"action=off\n{d}", "enter plug"),
        (f"action=status\nplug=n7\n{d}", "plug is not available"),
    ]:
        bad = fence(stdin)
        assert bad.returncode == 1 and message in bad.stderr, (stdin, bad.stderr)
    assert all(n["powered"] for n in lab.state()["nodes"].values())


def test_fence_script_of_the_lab_runs_the_module(tmp_path: Path) -> None:
    """The spec names ``<lab dir>/fence_lab``; it must work as a plain command."""
    from corral.lab.lab import FENCE_SCRIPT

    script = tmp_path / FENCE_SCRIPT
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m corral.lab.fence "$@"\n')
    script.chmod(0o755)
    out = subprocess.run([str(script)], input="action=metadata\n", capture_output=True, text=True)
    assert out.returncode == 0 and "resource-agent" in out.stdout


@pytest.mark.etcd
@NEEDS_ROOT
def test_the_cluster_fences_a_cut_off_node_through_the_lab_device(
    make_lab: Callable[..., Lab],
) -> None:
    """corral's own fence driver runs ``<lab>/fence_lab`` from the controller's namespace: a node
    cut off with a live lease is powered off (the spec's action ``off``)."""
    lab = make_lab("labfenced", fence_action="off")
    # not the controller: a cut-off controller is replaced only after its lease expired, and
    # a node whose lease expired is offline, not fenced
    controller = wait_for(lambda: lab.cluster_status()["controller"], 20, "a controller")
    victim = next(n for n in ("n3", "n2") if n != controller)
    lab.cut_link(victim)
    wait_for(lambda: not lab.state()["nodes"][victim]["powered"], 20, "fenced by the cluster")
    # the power-off records the state first, then kills (under the lab lock): wait for it
    wait_for(lambda: netns.pids(lab.node(victim)["ns"]) == [], 10, "every process killed")
    argv = [sys.executable, "-m", "corral.cli.main", "events", "--spec", str(lab.spec_file)]
    events = subprocess.run(
        lab.exec_argv("client", argv), capture_output=True, text=True, timeout=30
    ).stdout
    assert f"{victim} fenced by lab (off" in events  # the event names device and action
