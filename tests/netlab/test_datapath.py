"""The data path in the namespace lab: VIPs, HAProxy, active-active balancing, DNS.

What a client of the VIPs notices: a powered-off node's VIP answers again from another node,
never two answers for one VIP, no failed request when a backend crashes or during a rolling
restart, a backend answering 500 leaves every HAProxy at once, a configuration HAProxy refuses
changes nothing.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from corral.lab.client import summarize
from tests.netlab.conftest import HOME, VIPS, Net, two_answers

VIP = VIPS[1]  # held by n2 while everything runs


def test_every_vip_served_by_haproxy_round_robin(fenced_net: Net) -> None:
    net = fenced_net
    for vip in VIPS:
        assert net.holders(vip) == {HOME[vip]}
        served = Counter(net.get(vip).split()[-1] for _ in range(6))
        assert set(served) == {"198.18.5.11", "198.18.5.12", "198.18.5.13"}, served


def test_dns_name_resolves_to_the_live_vips(fenced_net: Net) -> None:
    net = fenced_net
    argv = ["dig", "+short", "-p", "5353", "@198.18.5.11", "api.netlab.example", "A"]
    from corral.lab import netns

    answers = [netns.run(netns.exec_argv(net.client_ns, argv)).split() for _ in range(3)]
    assert all(sorted(a) == VIPS for a in answers), answers
    assert len({a[0] for a in answers}) > 1, "answers are not rotated"


def test_power_off_moves_the_vip_never_two_answers(fenced_net: Net) -> None:
    net = fenced_net
    watch = net.arpwatch(VIP, 6.0)
    load = net.load(5.0, "--interval", "0.01", "--timeout", "0.1", urls=[f"http://{VIP}/"])
    time.sleep(1.0)
    fault = time.monotonic()
    net.lab.power_off("n2")
    got = summarize(load.records(), fault, url=f"http://{VIP}/")
    assert two_answers(watch) == []
    assert got["all_ok_s"] is not None, f"the VIP never answered again: {got}"
    assert got["all_ok_s"] < 3.0, got  # lab fencing: about 1 s (bench/failover.py has figures)
    assert net.holders(VIP) in ({"n1"}, {"n3"})
    assert "n2 fenced by lab" in net.events()
    net.settle()  # n2 powered on again: the VIP returns home (fail-back)
    assert net.holders(VIP) == {"n2"}


def test_backend_killed_under_load_no_failed_request(fenced_net: Net) -> None:
    net = fenced_net
    load = net.load(4.0, "--rate", "200", "--cycle", "--timeout", "1.0")
    time.sleep(1.0)
    fault = time.monotonic()
    net.lab.kill_service("n2", "api")
    got = summarize(load.records(), fault)
    assert got["requests"] > 500
    assert got["failed"] == 0, (got["errors"], got)
    net.settle()


def test_rolling_restart_under_load_no_failed_request(fenced_net: Net) -> None:
    net = fenced_net
    before = {n: net.lab.service_pid(n, "api") for n in ("n1", "n2", "n3")}
    load = net.load(12.0, "--rate", "200", "--cycle", "--timeout", "1.0")
    time.sleep(1.0)
    done = net.corral("resource", "restart", "api", "--rolling")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("restarted, healthy and back in rotation") == 3
    got = summarize(load.records(), 0.0)
    after = {n: net.lab.service_pid(n, "api") for n in ("n1", "n2", "n3")}
    assert all(after[n] not in (None, before[n]) for n in before), (before, after)
    assert got["failed"] == 0, (got["errors"], got)


def test_backend_answering_500_leaves_every_haproxy(fenced_net: Net) -> None:
    net = fenced_net
    start = time.monotonic()
    net.lab.malfunction("n3", "api", "500")
    try:
        took = net.wait(
            lambda: all(net.server_admin(n, "api", "n3") & 1 for n in ("n1", "n2", "n3")),
            10.0,
            "n3 in maintenance in every HAProxy",
        )
        # interval x fall = 0.4 s, + the check timeout, the status write and the watch
        assert took < 0.4 + 0.3 + 1.0, took
        bodies = {net.get(VIPS[0]) for _ in range(9)}
        assert not any("500" in b for b in bodies), bodies
    finally:
        net.lab.malfunction("n3", "api", "ok")
    net.wait(lambda: net.server_admin("n1", "api", "n3") == 0, 30.0, "n3 back in rotation")
    assert time.monotonic() - start < 60


def test_bad_haproxy_config_is_refused_and_the_old_one_kept(fenced_net: Net) -> None:
    net = fenced_net
    good = net.lab.spec_file.read_text()
    config = Path(net.lab.node("n1")["state_dir"]) / "haproxy" / "haproxy.cfg"
    before = config.read_text()
    # a check path with a space: a valid spec, but an `option httpchk` line HAProxy refuses
    bad = re.sub(r"(http://\{node\.address\}:8080)/", r"\1/health check", good, count=1)
    assert bad != good
    (net.work / "bad.yaml").write_text(bad)
    try:
        pushed = net.corral("spec", "push", str(net.work / "bad.yaml"))
        assert pushed.returncode == 0, pushed.stderr
        net.wait(lambda: "haproxy -c refused" in net.events(), 20.0, "the refusal event")
        assert config.read_text() == before
        assert all(net.get(v).startswith("ok") for v in VIPS)
    finally:
        (net.work / "good.yaml").write_text(good)
        assert net.corral("spec", "push", str(net.work / "good.yaml")).returncode == 0
    net.settle()
