"""The lab on real namespaces, real agents and real etcd: up, status, faults, down."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from corral.lab import netns
from corral.lab.lab import Lab, LabError

from .conftest import NEEDS_ROOT, NOTHING, leftovers, wait_for

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]


def fetch(lab: Lab, url: str, timeout: float = 1.0) -> tuple[int, str]:
    """(HTTP status, body) of ``url`` fetched from the client namespace; status 0: no answer."""
    argv = ["curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", url]
    out = subprocess.run(lab.exec_argv("client", argv), capture_output=True, text=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body.strip()


def healthy(view: dict[str, Any], resource: str) -> list[str]:
    return sorted(
        i["node"] for i in view["resources"][resource]["running"] if i["health"] == "healthy"
    )


def services_up(lab: Lab) -> dict[str, Any] | None:
    view = lab.cluster_status()
    ok = (
        set(view["nodes"].values()) == {"online"}
        and healthy(view, "web") == ["n1", "n2", "n3"]
        and len(healthy(view, "api")) == 1
    )
    return view if ok else None


def test_up_runs_agents_and_services_and_down_leaves_nothing(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("labup")
    status = lab.status()
    assert status["client"]["addresses"] == ["198.18.0.250/24"]
    for name, node in status["nodes"].items():
        assert node["powered"] and node["agent_alive"] and node["link"] == "up", name
        assert node["addresses"] == [f"198.18.0.{10 + int(name[1])}/24"]
    sysctl = ["sysctl", "-n", "net.ipv4.ip_nonlocal_bind", "net.ipv4.conf.all.arp_ignore"]
    out = subprocess.run(lab.exec_argv("n1", sysctl), capture_output=True, text=True).stdout
    assert out.split() == ["1", "1"]

    view = wait_for(lambda: services_up(lab), 40, "3 nodes online, web on 3, api on 1")
    assert view["nodes"] == {"n1": "online", "n2": "online", "n3": "online"}
    # each stand-in says which node answered
    for i in (1, 2, 3):
        assert fetch(lab, f"http://198.18.0.1{i}:8080/") == (200, f"ok 198.18.0.1{i}")

    lab_dir = lab.dir
    removed = lab.down()
    assert len(removed) == 5  # switch, client, 3 nodes
    assert leftovers(lab_dir) == NOTHING
    assert lab.down() == []  # idempotent
    assert Lab(lab_dir).down(force=True) == []


def test_service_faults_show_to_clients(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("labsvc", nodes=1)
    url = "http://198.18.0.11:8080/"
    wait_for(lambda: fetch(lab, url)[0] == 200, 30, "web answers")
    lab.malfunction("n1", "web", "500")
    assert fetch(lab, url) == (500, "500 198.18.0.11")
    lab.malfunction("n1", "web", "hang")
    assert fetch(lab, url, timeout=0.5)[0] == 0
    lab.malfunction("n1", "web", "ok")  # SIGCONT; or the agent restarted the hung one
    wait_for(lambda: fetch(lab, url) == (200, "ok 198.18.0.11"), 15, "web answers 200 again")

    pid = lab.kill_service("n1", "web")
    wait_for(  # the agent notices the crash and starts it again
        lambda: (lab.service_pid("n1", "web") not in (None, pid)) and fetch(lab, url)[0] == 200,
        30,
        "web restarted by the agent",
    )
    with pytest.raises(LabError, match="unknown mode"):
        lab.malfunction("n1", "web", "slow")
    with pytest.raises(LabError, match="unknown node"):
        lab.kill_service("n9", "web")
    with pytest.raises(LabError, match="no pid file"):
        lab.kill_service("n1", "nothing")


def test_power_off_kills_everything_and_power_on_registers_again(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("labpower")
    n3 = lab.node("n3")
    # a VIP the node held: a machine that lost power must not hold it when it returns
    netns.add_address(n3["ns"], n3["ifname"], "198.18.0.100/24")
    netns.add_address(n3["ns"], n3["ifname"], "198.18.0.101/32")
    old_pid = n3["agent_pid"]

    killed = lab.power_off("n3")
    assert old_pid in killed and len(killed) >= 2  # the agent and its etcd member at least
    assert netns.pids(n3["ns"]) == []
    node = lab.status()["nodes"]["n3"]
    assert (node["powered"], node["link"], node["agent_alive"]) == (False, "down", False)
    assert node["addresses"] == ["198.18.0.13/24"]
    assert fetch(lab, "http://198.18.0.13:8080/", timeout=0.5)[0] == 0
    # the lease runs out; after that the cluster has no reason to fence n3 again
    wait_for(lambda: "n3" not in lab.online_nodes(), 20, "n3's lease expires")
    assert lab.power_off("n3") == []  # already off: fine

    new_pid = lab.power_on("n3")
    assert new_pid != old_pid
    lab.wait_online(["n3"], timeout=40)  # the record names the new agent's pid
    assert lab.status()["nodes"]["n3"]["agent_alive"]
    assert lab.power_on("n3") == new_pid  # already on: the same agent


def test_cut_link_isolates_a_node_whose_processes_keep_running(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("labcut", nodes=1)
    url = "http://198.18.0.11:8080/"
    wait_for(lambda: fetch(lab, url)[0] == 200, 30, "web answers")
    before = netns.pids(lab.node("n1")["ns"])
    lab.cut_link("n1")
    node = lab.status()["nodes"]["n1"]
    assert (node["switch_port"], node["link"]) == ("down", "no-carrier")
    assert fetch(lab, url, timeout=0.5)[0] == 0
    assert set(before) <= set(netns.pids(lab.node("n1")["ns"]))
    lab.heal_link("n1")
    wait_for(lambda: fetch(lab, url)[0] == 200, 10, "web reachable again")

    if not netns.netem_available():
        with pytest.raises(netns.NetnsError, match="no netem"):
            lab.netem("n1", loss=10)
        return
    lab.netem("n1", loss=5, delay=0.05)
    assert "delay 50ms" in lab.status()["nodes"]["n1"]["netem"]
    lab.clear_netem("n1")
    assert lab.status()["nodes"]["n1"]["netem"] == ""
