"""The keepalived + HAProxy baseline on real namespaces, real keepalived 2.2.7 and HAProxy 2.6,
measured with the real load generator; every test leaves no ``ckb`` namespace or process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.lab import netns
from corral.lab.client import load, summarize

from .conftest import NEEDS_ROOT, ours

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _keepalived import (
    BaselineError,
    KeepalivedLab,
    Node,
    haproxy_cfg,
    keepalived_conf,
    parse_stat,
)

needs_daemons = pytest.mark.skipif(
    not (shutil.which("keepalived") and shutil.which("haproxy")), reason="needs keepalived, haproxy"
)


def leftovers(work: Path) -> tuple[list[str], list[int]]:
    return netns.list_namespaces("ckb-"), ours(str(work))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[KeepalivedLab]:
    """A lab object in ``tmp_path/ckb`` (not up); torn down in ``finally``, and the test fails
    if anything of it is left."""
    work = tmp_path / "ckb"
    made = KeepalivedLab(work)
    try:
        yield made
    finally:
        made.down()
        assert leftovers(work) == ([], [])


@NEEDS_ROOT
@needs_daemons
def test_every_vip_served_from_home_and_power_off_moves_it(
    lab: KeepalivedLab, tmp_path: Path
) -> None:
    lab.up(nodes=3, advert_int=1.0, vrrp_version=2)
    for vip in lab.vips:
        assert lab.holders(vip) == {lab.home(vip)}
        for source in lab.client_sources[:3]:
            assert (lab.get(vip, source=source) or "").startswith("ok 198.18.8.1")
    assert all(set(lab.server_states(n).values()) == {"UP"} for n in ("n1", "n2", "n3"))

    vip = lab.vips[0]
    out = tmp_path / "run.json"
    client = lab.start_client(out, duration=9.0, urls=[lab.url(vip)])
    time.sleep(1.0)
    fault = time.monotonic()
    killed = lab.power_off(lab.home(vip))
    assert killed  # app, HAProxy and keepalived's processes
    client.wait(timeout=30)
    records, _ = load(out)
    s = summarize(records, fault, url=lab.url(vip))
    assert s["failed_before_fault"] == 0
    assert s["failed_after_fault"] > 0  # the VIP's holder is gone: an outage is seen
    assert s["first_success_s"] is not None and s["first_success_s"] < 6.0
    assert lab.holders(vip) == {"n2"}  # the first heir (priority 100)
    assert not netns.addresses("ckb-n1", "ckbn1")[1:]  # the powered-off node holds no VIP
    # HAProxy still sends the share of requests that hash to n1 to the dead backend (stock
    # checks need ~10-20 s to mark it DOWN): some requests after the recovery still fail.
    assert s["tail_failed"] > 0


@NEEDS_ROOT
@needs_daemons
def test_drained_rolling_restart_loses_nothing_and_partitions(
    lab: KeepalivedLab, tmp_path: Path
) -> None:
    lab.up(nodes=3, advert_int=1.0, vrrp_version=2)
    out = tmp_path / "run.json"
    client = lab.start_client(out, duration=30.0, interval=0.02)
    start = time.monotonic()
    steps = lab.rolling_restart(drain=True, down_time=0.3)
    client.terminate()  # SIGTERM: the client stops sending and writes what it has
    client.wait(timeout=10)
    records, meta = load(out)
    assert meta["stopped_early"] and len(steps) == 3
    assert all(s["stopped"] < s["started"] < s["up"] for s in steps)
    during = [r for r in records if start <= r.sent <= steps[-1]["up"]]
    assert len(during) > 100
    assert [r for r in during if not r.ok] == []
    served = {r.body for r in during}
    assert served == {f"ok 198.18.8.1{i}" for i in (1, 2, 3)}  # every backend served

    # Both partitions at once (one wait): n3's port goes down (its veth loses carrier: its
    # keepalived enters FAULT and releases VIP 3), n2's port stops forwarding (carrier kept:
    # n2 hears nobody and holds every VIP, and so does n1): two holders of VIP 2.
    lab.cut_link("n3")
    lab.isolate("n2")
    want = {lab.vips[0]: {"n1", "n2"}, lab.vips[1]: {"n1", "n2"}, lab.vips[2]: {"n1", "n2"}}
    wait_holders(lab, want)
    lab.heal_link("n3")
    lab.isolate("n2", on=False)
    wait_holders(lab, {vip: {lab.home(vip)} for vip in lab.vips})  # preemption: back home


def wait_holders(lab: KeepalivedLab, want: dict[str, set[str]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := {vip: lab.holders(vip) for vip in want}) != want:
        assert time.monotonic() < deadline, f"holders {seen}, want {want}"
        time.sleep(0.1)


@NEEDS_ROOT
@needs_daemons
def test_a_crashed_run_is_cleaned_up_by_prefix(tmp_path: Path) -> None:
    work = tmp_path / "crashed"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "bench")!r})
        from pathlib import Path
        from _keepalived import KeepalivedLab
        KeepalivedLab(Path({str(work)!r})).up(nodes=2)
        os._exit(0)  # no down: what a crash leaves
        """
    )
    try:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        ns, procs = leftovers(work)
        assert ns == ["ckb-cl", "ckb-n1", "ckb-n2", "ckb-sw"] and procs
        removed = KeepalivedLab.down_stale()
        assert len(removed) == 4
        assert leftovers(work) == ([], [])
        assert KeepalivedLab.down_stale() == []  # idempotent
    finally:
        KeepalivedLab.down_stale()


def test_configuration_follows_the_usual_layout(tmp_path: Path) -> None:
    confs = [keepalived_conf(Node(f"n{i}", i), 3, 1.0, 2) for i in (1, 2, 3)]
    # each VIP: MASTER on its home only, priorities 150 > 100 > 50 in a fixed heir order
    for home in (1, 2, 3):
        block = [c.split(f"vrrp_instance VI_{home} {{")[1].split("}\n}")[0] for c in confs]
        assert [("state MASTER" in b) for b in block] == [i == home for i in (1, 2, 3)]
        prio = [int(b.split("priority ")[1].split()[0]) for b in block]
        assert sorted(prio, reverse=True) == [150, 100, 50] and prio[home - 1] == 150
        assert all(f"198.18.8.{99 + home}/24" in b for b in block)
    assert "vrrp_version 2" in confs[0] and "advert_int 1\n" in confs[0]
    tuned = keepalived_conf(Node("n1", 1), 3, 0.01, 3)
    assert "vrrp_version 3" in tuned and "advert_int 0.01\n" in tuned
    with pytest.raises(ValueError):
        keepalived_conf(Node("n1", 1), 3, 0.005, 3)  # keepalived would ignore it: use 1 s
    with pytest.raises(ValueError):
        KeepalivedLab(tmp_path).up(advert_int=0.001)  # refused before anything is built
    cfg = haproxy_cfg(Node("n1", 1), 3, tmp_path)
    for line in ("option redispatch", "retries 3", "balance source", "option httpchk GET /"):
        assert f"  {line}\n" in cfg
    assert cfg.count("check inter 2000 rise 2 fall 5") == 3 and cfg.count("  bind ") == 3
    stat = "# pxname,svname,status\napi_cluster,FRONTEND,OPEN\napi_cluster,n1,UP\napi_cluster,n2,DOWN 1/2\napi_cluster,BACKEND,UP\n"
    assert parse_stat(stat) == {"n1": "UP", "n2": "DOWN 1/2"}
    with pytest.raises(BaselineError):
        KeepalivedLab(tmp_path).node("n9")
    assert KeepalivedLab(tmp_path).url("198.18.8.100") == "http://198.18.8.100:80/"
