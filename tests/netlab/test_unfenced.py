"""The data path without a fence device: what gossip alone does (HAProxy), and what the
leases guarantee (rule 1 and 2) when a VIP holder is cut off. One lab for the module, apart
from the fenced one (module fixtures of one file would run both labs at once)."""

from __future__ import annotations

import time

from corral.spec.profiles import profile_timing
from tests.netlab.conftest import VIPS, Net, arp_samples, two_answers

VIP = VIPS[1]  # held by n2 while everything runs


def handover(net: Net, vip: str, old: str, fault: float, limit: float) -> tuple[float, float]:
    """Seconds after ``fault`` at which ``old`` no longer had ``vip`` configured and another
    node had it; fails at once if another node took it while ``old`` still held it."""
    dropped = taken = None
    while time.monotonic() - fault < limit and (dropped is None or taken is None):
        held = net.holders(vip)
        now = time.monotonic() - fault
        if dropped is None and old not in held:
            dropped = now
        if taken is None and held - {old}:
            taken = now
            assert old not in held, f"another node took {vip} while {old} still held it"
        time.sleep(0.005)
    assert dropped is not None and taken is not None, (dropped, taken)
    return dropped, taken


def test_link_cut_holder_drops_its_vip_before_anyone_takes_it(unfenced_net: Net) -> None:
    net = unfenced_net
    watch = net.arpwatch(VIP, 8.0)
    fault = time.monotonic()
    net.lab.cut_link("n2")
    try:
        dropped, taken = handover(net, VIP, "n2", fault, 7.0)
    finally:
        net.lab.heal_link("n2")
    assert dropped < taken, (dropped, taken)
    assert two_answers(watch) == []
    net.settle()


def test_gossip_death_takes_the_node_out_of_every_haproxy_before_its_lease_ends(
    unfenced_net: Net,
) -> None:
    """No fence device here: n3's lease lives on for its TTL after the cut, but gossip holds
    it dead well before that, and every other HAProxy stops sending to it at once."""
    net = unfenced_net
    cut = time.monotonic()
    net.lab.cut_link("n3")
    try:
        took = net.wait(
            lambda: all(net.server_admin(n, "api", "n3") & 1 for n in ("n1", "n2")),
            10.0,
            "n3 in maintenance in n1's and n2's HAProxy",
        )
    finally:
        net.lab.heal_link("n3")
    # n3's lease cannot expire before lease_ttl - keepalive_interval after the cut (its last
    # renewal was at most one interval before): out of rotation before that is gossip's doing
    timing = profile_timing("lan")
    assert took < timing.lease_ttl - timing.keepalive_interval, took
    assert time.monotonic() - cut < 12
    net.settle()


def test_partition_from_peers_never_two_answers_for_a_vip(unfenced_net: Net) -> None:
    """n2 loses its peers but not the client: it keeps answering ARP for its VIP until it
    self-fences (its lease cannot be renewed), and nobody takes the VIP before its lease has
    expired. The client's ARP watch must never see two MACs for the VIP."""
    net = unfenced_net
    watch = net.arpwatch(VIP, 9.0)
    time.sleep(0.5)
    fault = time.monotonic()
    net.lab.partition("n2")
    try:
        dropped, taken = handover(net, VIP, "n2", fault, 8.0)
    finally:
        net.lab.heal_partition("n2")
    samples = arp_samples(watch)
    # the partition left the client's path to n2 open: n2 kept answering until it dropped
    while_held = [s for s in samples if fault + 0.1 < s["t"] < fault + dropped - 0.1]
    assert while_held and all(len(s["macs"]) == 1 for s in while_held), while_held[:5]
    timing = profile_timing("lan")
    # rule 1: n2 dropped it after lease_ttl - safety_margin at most (+ a keepalive and slack)
    assert dropped < timing.lease_ttl - timing.safety_margin + timing.keepalive_interval + 1.0
    assert dropped < taken, (dropped, taken)
    assert [s for s in samples if len(s.get("macs", [])) > 1] == []
    net.settle()
