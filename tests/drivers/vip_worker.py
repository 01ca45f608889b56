"""A driver host for the VIP tests: runs inside one node's namespace (``ip netns exec``).

It keeps :class:`VipAddress` objects alive across calls (so a background announcement burst
runs, and a later stop() can cancel it), exactly as an agent would. Protocol: one JSON object
per line on stdin, one JSON answer per line on stdout.

- ``{"op": "make", "id": ..., "address": "198.18.64.100/24", "node_address": ..., **kwargs}``
- ``{"op": "call", "id": ..., "method": "start"}`` -> ``{"ok": true, "value": ..., "elapsed": s}``
  or ``{"ok": false, "error": "DriverError", "kind": "DriverError"|"NodeFault", "message": ...}``
- ``{"op": "cancel_start", "id": ..., "after": s}`` -> "cancelled" or "finished"
- ``{"op": "who_has", "ifname": ..., "ip": ..., "timeout": s, "count": n}`` -> sorted MACs
- ``{"op": "watch_announcements", "ifname": ..., "ip": ..., "duration": s}`` starts listening
  for gratuitous ARPs in the background; ``{"op": "watch_result", "ip": ...}`` waits for the
  window's end and returns their arrival times (``time.monotonic``, comparable across
  processes on one machine: namespaces share the clock)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from ipaddress import IPv4Address, ip_interface
from typing import Any

from corral.drivers.base import DriverError, DriverStatus, NodeContext, NodeFault
from corral.drivers.vip import VipAddress, arp_who_has
from corral.net.arp import ETH_P_ARP, LinkSocket, parse_arp

watches: dict[str, asyncio.Task[list[float]]] = {}


def watch_announcements(ifname: str, ip: str, duration: float) -> list[float]:
    """Arrival times (monotonic) of gratuitous ARPs for ``ip`` seen on ``ifname``."""
    vip = IPv4Address(ip)
    times = []
    with LinkSocket(ifname, ETH_P_ARP) as link:
        for frame in link.frames(time.monotonic() + duration):
            packet = parse_arp(frame)
            if packet is not None and packet.sender_ip == vip and packet.target_ip == vip:
                times.append(time.monotonic())
    return times


async def handle(req: dict[str, Any], drivers: dict[str, VipAddress]) -> Any:
    op = req.pop("op")
    if op == "make":
        ident = req.pop("id")
        node = NodeContext(name=ident, address=req.pop("node_address"))
        drivers[ident] = VipAddress(ident, ip_interface(req.pop("address")), node, **req)
        return None
    if op == "call":
        driver = drivers[req["id"]]
        value = await getattr(driver, req["method"])()
        if isinstance(value, DriverStatus):
            return {"state": value.state, "detail": value.detail}
        return value
    if op == "cancel_start":  # start(), cancelled after ``after`` seconds (an agent shutdown)
        task = asyncio.create_task(drivers[req["id"]].start())
        await asyncio.sleep(req["after"])
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"
    if op == "announcing":
        return drivers[req["id"]].announcing
    if op == "watch_announcements":
        watches[req["ip"]] = asyncio.create_task(
            asyncio.to_thread(watch_announcements, req["ifname"], req["ip"], req["duration"])
        )
        return None
    if op == "watch_result":
        return await watches.pop(req["ip"])
    if op == "who_has":
        macs = await asyncio.to_thread(
            arp_who_has, req["ifname"], IPv4Address(req["ip"]), req["timeout"], req["count"]
        )
        return sorted(macs)
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    drivers: dict[str, VipAddress] = {}
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        req = json.loads(line)
        began = time.monotonic()
        try:
            value = await handle(req, drivers)
            answer = {"ok": True, "value": value}
        except DriverError as exc:
            kind = "NodeFault" if isinstance(exc, NodeFault) else "DriverError"
            answer = {"ok": False, "error": "DriverError", "kind": kind, "message": str(exc)}
        except Exception as exc:
            answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        answer["began"], answer["ended"] = began, time.monotonic()
        answer["elapsed"] = answer["ended"] - began
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    # End of input: exit as an agent would, leaving addresses in place (the lab removes them
    # with the namespaces); asyncio.run cancels a running burst.


if __name__ == "__main__":
    asyncio.run(main())
