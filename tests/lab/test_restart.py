"""Restarting corral itself in the namespace lab: every agent in turn, as ``systemctl restart``
does (SIGTERM), must leave every VIP on its node and every service process untouched."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from corral.lab import netns
from corral.lab.lab import Lab

from .conftest import FAST, NEEDS_ROOT

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]

VIPS = ["198.18.0.100", "198.18.0.101", "198.18.0.102"]
SPEC = f"""
cluster: labrestart
profile: lan
nodes:
  n1: {{address: 198.18.0.11}}
  n2: {{address: 198.18.0.12}}
  n3: {{address: 198.18.0.13}}
fencing:
  power: {{agent: fence_ipmilan, params: {{ip: 198.18.1.1}}}}
defaults:
  health: {FAST}
resources:
  vips:
    vip-set: [{", ".join(v + "/24" for v in VIPS)}]
  api:
    systemd: api.service
    mode: active-passive
    health: {{tcp: "{{node.address}}:9000"}}
"""


class Holders:
    """Samples which nodes hold each VIP every 20 ms, in a thread."""

    def __init__(self, lab: Lab) -> None:
        self.samples: list[dict[str, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.nodes = {name: (n["ns"], n["ifname"]) for name, n in lab.state()["nodes"].items()}

    def now(self) -> dict[str, set[str]]:
        held: dict[str, set[str]] = {vip: set() for vip in VIPS}
        for name, (ns, ifname) in self.nodes.items():
            for address in netns.addresses(ns, ifname):
                if address.split("/")[0] in held:
                    held[address.split("/")[0]].add(name)
        return held

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append(self.now())

    def __enter__(self) -> Holders:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def restart(lab: Lab, node: str, sig: signal.Signals) -> None:
    lab.kill_agent(node, sig, wait=10.0)
    lab.power_on(node)
    handover = Path(lab.node(node)["state_dir"]) / "handover.json"
    deadline = time.monotonic() + 20
    while handover.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3.0)  # longer than the lan lease: a lease nobody renewed would have run out


def settled(lab: Lab, holders: Holders, timeout: float = 60) -> dict[str, set[str]]:
    """Every VIP on one node, the api on one node, and that for 2 s."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        held = holders.now()
        api = [n for n in ("n1", "n2", "n3") if lab.service_pid(n, "api")]
        ok = all(len(h) == 1 for h in held.values()) and len(api) == 1
        if ok and held == last:
            return held
        last = held if ok else None
        time.sleep(2.0)
    raise AssertionError(f"the lab did not settle: {holders.now()}")


def test_agents_restarted_in_turn_move_nothing_and_restart_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "restart.yaml"
    spec.write_text(SPEC)
    lab = Lab.up(spec, tmp_path / "lab", timeout=60, fence_action="none")
    try:
        before = settled(lab, Holders(lab))
        api = {n: lab.service_pid(n, "api") for n in ("n1", "n2", "n3")}
        with Holders(lab) as during:
            for node in ("n1", "n2", "n3"):
                restart(lab, node, signal.SIGTERM)
        moved = [s for s in during.samples if s != before]
        assert during.samples and not moved, f"VIPs left their nodes: {moved[:3]} (from {before})"
        assert {n: lab.service_pid(n, "api") for n in api} == api, "the api was restarted"

        # the counter-check: an agent killed -9 hands nothing over; its VIP drops meanwhile
        (holder,) = before[VIPS[0]]
        with Holders(lab) as killed:
            restart(lab, holder, signal.SIGKILL)
        assert any(s[VIPS[0]] != {holder} for s in killed.samples), "the sampler saw no gap"
    finally:
        lab.down(force=True)
