"""The VIP driver in real network namespaces: two nodes and a client on a bridge.

Each test gets a fresh lab (tests/drivers/vip_lab.py); the driver runs inside the node's
namespace in a driver host process, as the agent does under ``ip netns exec``. The client
checks what a user of the VIP would see: who answers ARP, and where its neighbour table points.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import statistics
from collections.abc import AsyncIterator, Awaitable
from ipaddress import IPv4Address, IPv6Address

import pytest

from corral.net import arp

from .helpers import eventually
from .vip_lab import Lab, run, vip_lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces)",
)

VIP = "198.18.64.100"
VIP6 = "fd00:64::100"


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with vip_lab() as lab:
        yield lab


async def test_client_sees_exactly_the_holder_and_nobody_after_stop(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24")
    assert await a.state() == "stopped"
    await a.ok("start")
    assert await a.state() == "running"
    assert VIP in lab.a.addresses()
    # Three requests, 0.2 s each: a second holder answering at all would show here.
    assert await lab.wc.who_has(VIP, count=3) == {lab.a.mac}
    await a.ok("stop")
    assert VIP not in lab.a.addresses()
    assert await lab.wc.who_has(VIP, count=2) == set()
    assert await a.state() == "stopped"


async def test_takeover_repoints_the_clients_neighbour_entry(lab: Lab) -> None:
    # A long burst on A: its stop() must cancel it, or A would pull the client back.
    a = await lab.wa.make("vip", f"{VIP}/24", announce_count=20, announce_interval=0.05)
    b = await lab.wb.make("vip", f"{VIP}/24")
    await a.ok("start")
    lab.c.ping(VIP)
    assert lab.c.neighbour(VIP) == lab.a.mac  # the entry exists before the move
    await a.ok("stop")
    assert not await a.announcing()
    await b.ok("start")
    # The first gratuitous ARP went out before start() returned; the client's kernel handles
    # it in softirq context, so it is there at once (a few ms of slack for the scheduler).
    await eventually(
        lambda: lab.c.neighbour(VIP) == lab.b.mac, timeout=0.3, interval=0.01, what="client -> B"
    )
    assert await lab.wc.who_has(VIP, timeout=0.5) == {lab.b.mac}  # 0.5 s: A's burst window
    assert lab.c.neighbour(VIP) == lab.b.mac
    lab.c.ping(VIP)  # traffic really reaches B
    assert lab.c.neighbour(VIP) == lab.b.mac


async def test_start_refuses_an_address_another_host_answers_for(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24")
    b = await lab.wb.make("vip", f"{VIP}/24")
    await a.ok("start")
    message = await b.fails("start", kind="NodeFault")  # another host's, not counted (rule 7)
    assert f"{VIP} is answered by {lab.a.mac}" in message
    assert "another host holds it; not taking it" in message
    assert VIP not in lab.b.addresses()
    assert await b.state() == "stopped"
    assert not await b.ok("adopt")
    assert await lab.wc.who_has(VIP, count=2) == {lab.a.mac}
    # A plain host (no corral) holding the address is refused the same way.
    await a.ok("stop")
    run("ip", "-n", lab.c.ns, "addr", "add", f"{VIP}/24", "dev", lab.c.ifname)
    assert f"answered by {lab.c.mac}" in await b.fails("start", kind="NodeFault")
    assert VIP not in lab.b.addresses()


async def test_concurrent_starts_never_make_two_holders(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", probe_timeout=0.2)
    b = await lab.wb.make("vip", f"{VIP}/24", probe_timeout=0.2)
    for _ in range(3):
        results = await asyncio.gather(a.call("start"), b.call("start"))
        holders = [r for r in results if r["ok"]]
        assert len(holders) <= 1, results
        for refused, other in ((results[0], lab.b), (results[1], lab.a)):
            if not refused["ok"]:
                assert other.mac in refused["message"], refused  # backed off for the other
        expected = {lab.a.mac} if results[0]["ok"] else {lab.b.mac} if results[1]["ok"] else set()
        assert await lab.wc.who_has(VIP, count=2) == expected
        await a.ok("stop")
        await b.ok("stop")


async def test_a_failed_announcement_shows_in_status(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", announce_count=3, announce_interval=0.2)
    await a.ok("start")
    run("ip", "-n", lab.a.ns, "link", "set", lab.a.ifname, "down")  # the address stays on it
    await eventually(
        lambda: _not(a.announcing()), timeout=2, interval=0.05, what="burst stopped by the error"
    )
    status = await a.ok("status")
    assert status["state"] == "running", status
    assert "announcement failed" in status["detail"] and "down" in status["detail"], status


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def test_announcement_burst_timing_and_cancellation(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", announce_count=3, announce_interval=0.2)
    await lab.wc.request(op="watch_announcements", ifname=lab.c.ifname, ip=VIP, duration=1.0)
    started = await a.call("start")
    assert started["ok"], started
    assert started["elapsed"] < 0.5  # returns after the first announcement, not the burst
    assert await a.announcing()
    seen = (await lab.wc.request(op="watch_result", ip=VIP))["value"]
    assert len(seen) == 3, seen
    assert seen[0] <= started["ended"] + 0.05  # the first one before start() returned
    gaps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert all(0.15 < gap < 0.5 for gap in gaps), gaps
    assert not await a.announcing()
    # stop() right after start(): the rest of a long burst never goes out.
    await a.ok("stop")
    long_burst = await lab.wa.make("long", f"{VIP}/24", announce_count=10, announce_interval=0.1)
    await lab.wc.request(op="watch_announcements", ifname=lab.c.ifname, ip=VIP, duration=0.8)
    await long_burst.ok("start")
    await long_burst.ok("stop")
    assert not await long_burst.announcing()
    seen = (await lab.wc.request(op="watch_result", ip=VIP))["value"]
    assert len(seen) == 1, seen


async def test_idempotence_adopt_and_roles(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24")
    assert not await a.ok("adopt")
    await a.ok("stop")  # stopping a stopped VIP succeeds
    await a.ok("start")
    again = await a.call("start")  # already there: success without a probe
    assert again["ok"] and again["elapsed"] < 0.09, again
    assert [i["local"] for i in [lab.a.addr_info(VIP)] if i] == [VIP]
    # An agent restart: a fresh driver object adopts the address it finds.
    restarted = await lab.wa.make("vip-restarted", f"{VIP}/24")
    assert await restarted.ok("adopt")
    assert await restarted.state() == "running"
    for method in ("promote", "demote"):
        assert "no promoted role" in await a.fails(method)
    await a.ok("stop")
    await a.ok("stop")
    assert not await restarted.ok("adopt")
    assert await a.state() == "stopped"
    assert VIP not in lab.a.addresses()


async def test_a_cancelled_start_leaves_no_address(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", probe_timeout=1.0)
    answer = await lab.wa.request(op="cancel_start", id="vip", after=0.2)
    assert answer["value"] == "cancelled", answer
    assert answer["elapsed"] < 1.5, answer  # waited for the probe thread, not more
    assert VIP not in lab.a.addresses()
    assert await lab.wc.who_has(VIP) == set()
    await a.ok("start")  # the driver is still usable
    assert await lab.wc.who_has(VIP) == {lab.a.mac}


async def test_missing_interface_is_a_clear_error(lab: Lab) -> None:
    named = await lab.wa.make("vip", f"{VIP}/24", interface="cvt-nope")
    for method in ("start", "status"):
        assert "no interface 'cvt-nope' in this network namespace" in await named.fails(method)
    await named.ok("stop")  # nothing can be held on a missing interface
    assert not await named.ok("adopt")
    lost = await lab.wa.make("lost", f"{VIP}/24", node_address="198.18.64.77")
    message = await lost.fails("start")
    assert "no interface holds the node address 198.18.64.77" in message
    assert VIP not in lab.a.addresses()


async def test_interface_down_fails_start_and_leaves_nothing(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", interface=lab.a.ifname)
    run("ip", "-n", lab.a.ns, "link", "set", lab.a.ifname, "down")
    message = await a.fails("start")  # counted: a VIP whose NIC broke must move elsewhere
    assert "cannot probe" in message and "down" in message.lower(), message
    assert VIP not in lab.a.addresses()
    assert await a.state() == "stopped"


async def test_ipv6_vip_add_remove_refusal_and_takeover(lab: Lab) -> None:
    a = await lab.wa.make("vip6", f"{VIP6}/64")
    b = await lab.wb.make("vip6", f"{VIP6}/64")
    await a.ok("start")
    info = lab.a.addr_info(VIP6)
    assert info is not None and info["prefixlen"] == 64
    assert info.get("nodad") and not info.get("tentative"), info  # usable at once
    assert await a.state() == "running"
    lab.c.ping(VIP6)
    assert lab.c.neighbour(VIP6) == lab.a.mac
    # B's duplicate-address solicitation is answered by A's kernel.
    message = await b.fails("start", kind="NodeFault")
    assert f"{VIP6} is answered by {lab.a.mac}" in message
    assert lab.b.addr_info(VIP6) is None
    await a.ok("stop")
    assert lab.a.addr_info(VIP6) is None
    assert await a.state() == "stopped"
    # The kernel would not announce a new address here (ndisc_notify is 0): the unsolicited
    # neighbour advertisement that moves the client is the driver's own.
    assert run_sysctl(lab.b.ns, f"net.ipv6.conf.{lab.b.ifname}.ndisc_notify") == "0"
    await b.ok("start")
    await eventually(
        lambda: lab.c.neighbour(VIP6) == lab.b.mac, timeout=0.3, interval=0.01, what="client -> B"
    )
    lab.c.ping(VIP6)
    await b.ok("stop")
    await b.ok("stop")
    assert lab.b.addr_info(VIP6) is None


async def test_start_time_is_dominated_by_the_probe(lab: Lab) -> None:
    a = await lab.wa.make("vip", f"{VIP}/24", probe_timeout=0.1)
    b = await lab.wb.make("vip", f"{VIP}/24", probe_timeout=0.1)
    starts, refusals, stops = [], [], []
    for _ in range(5):
        started = await a.call("start")
        assert started["ok"], started
        starts.append(started["elapsed"])
        refused = await b.call("start")
        assert not refused["ok"], refused
        refusals.append(refused["elapsed"])
        stopped = await a.call("stop")
        assert stopped["ok"], stopped
        stops.append(stopped["elapsed"])
    report = {
        name: f"min {min(v) * 1000:.1f} ms, median {statistics.median(v) * 1000:.1f} ms, "
        f"max {max(v) * 1000:.1f} ms"
        for name, v in (("start", starts), ("refusal", refusals), ("stop", stops))
    }
    print(f"\nVIP driver timings, probe_timeout 100 ms, 5 runs: {report}")
    assert all(0.1 <= s < 1.0 for s in starts), starts  # the probe window is waited out
    assert all(r < 0.5 for r in refusals), refusals  # a holder's answer ends the probe early
    assert all(s < 0.5 for s in stops), stops


def run_sysctl(ns: str, key: str) -> str:
    return run("ip", "netns", "exec", ns, "sysctl", "-n", key).strip()


# --- the pure frame codec (no namespaces needed) -------------------------------------------------

MAC_A = bytes.fromhex("020000640001")
MAC_B = bytes.fromhex("020000640002")


def test_arp_frames_round_trip_and_conflict_rules() -> None:
    ip = IPv4Address(VIP)
    probe = arp.parse_arp(arp.probe_v4(MAC_A, ip))
    assert probe == arp.ArpPacket(1, MAC_A, IPv4Address("0.0.0.0"), arp.ZERO_MAC, ip)
    assert len(arp.probe_v4(MAC_A, ip)) == arp.MIN_FRAME
    garp = arp.parse_arp(arp.announcement_v4(MAC_B, ip))
    assert garp is not None and garp.sender_ip == garp.target_ip == ip
    holder = arp.Conflict("02:00:00:64:00:02", probing=False)
    assert arp.conflict_v4(garp, ip, own_mac=MAC_A) == holder  # B announces our address
    assert arp.conflict_v4(garp, ip, own_mac=MAC_B) is None  # our own frame
    other_probe = arp.parse_arp(arp.probe_v4(MAC_B, ip))
    assert other_probe is not None
    assert arp.conflict_v4(other_probe, ip, own_mac=MAC_A) == arp.Conflict(holder.mac, True)
    unrelated = arp.parse_arp(arp.probe_v4(MAC_B, IPv4Address("198.18.64.101")))
    assert unrelated is not None and arp.conflict_v4(unrelated, ip, own_mac=MAC_A) is None
    asking = arp.parse_arp(arp.arp_frame(1, MAC_B, IPv4Address("198.18.64.2"), ip))
    assert asking is not None and arp.conflict_v4(asking, ip, own_mac=MAC_A) is None
    assert arp.parse_arp(b"\x00" * 20) is None
    assert arp.parse_arp(arp.advert_v6(MAC_A, IPv6Address(VIP6))) is None


def test_neighbour_discovery_frames_checksum_and_conflict_rules() -> None:
    ip = IPv6Address(VIP6)
    frame = arp.advert_v6(MAC_B, ip)
    icmp = frame[14 + 40 : 14 + 40 + 32]
    pseudo = ip.packed + arp.ALL_NODES.packed + (32).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert arp._checksum(pseudo + icmp) == 0  # a correct checksum sums to zero
    assert frame[:6] == bytes.fromhex("333300000001")
    advert = arp.parse_nd(frame)
    assert advert == arp.NdMessage(arp.ND_NA, ip, ip, MAC_B)
    assert arp.conflict_v6(advert, ip, own_mac=MAC_A) == arp.Conflict("02:00:00:64:00:02", False)
    assert arp.conflict_v6(advert, ip, own_mac=MAC_B) is None
    assert str(arp.solicited_node(ip)) == "ff02::1:ff00:100"
    probe = arp.probe_v6(MAC_B, ip)
    assert probe[:6] == bytes.fromhex("3333ff000100")
    dad = arp.parse_nd(probe)
    assert dad == arp.NdMessage(arp.ND_NS, IPv6Address("::"), ip, MAC_B)
    assert arp.conflict_v6(dad, ip, own_mac=MAC_A) == arp.Conflict("02:00:00:64:00:02", True)
    assert arp.parse_nd(arp.probe_v4(MAC_A, IPv4Address(VIP))) is None
    assert arp.parse_nd(frame[:60]) is None  # truncated
