"""The VIP driver: one floating address on one interface of the node it runs on.

Contract (in addition to :mod:`corral.drivers.base`):

- **Where.** Everything acts in the network namespace of the calling process (the agent's; the
  lab runs each agent under ``ip netns exec``). The interface is the one named, or else the one
  that holds ``node.address``; it is looked up by netlink (pyroute2 ``AsyncIPRoute``) at every
  call, so an interface renamed or recreated under the agent is found again.
- **start()** succeeds at once when the address is already on the interface (any prefix
  length: it is the address that answers ARP). Otherwise it probes for the address (IPv4: an
  RFC 5227 ARP probe from 0.0.0.0; IPv6: a duplicate-address-detection solicitation from ::)
  for ``probe_timeout`` seconds, and refuses with DriverError naming the MAC that answers when
  any other host holds the address - the duplicate-address refusal: two holders of one VIP
  are worse than none. Another host probing for it in the same window is refused too (both
  sides back off, RFC 5227 2.1.1; the controller's next round picks one). These two refusals
  are :class:`NodeFault`: another host's doing, not the VIP's failure here (rule 7). A
  failure of the interface itself (down, missing: probe or announcement impossible) is a
  plain DriverError and counts, so that a VIP whose NIC broke moves to another node. Then
  it adds the
  address (IPv6 with ``nodad``: the probe was our DAD, and the kernel's own would keep the
  address tentative for a second) and sends the first announcement (gratuitous ARP /
  unsolicited neighbour advertisement with Override) before it returns; the other
  ``announce_count - 1`` follow ``announce_interval`` apart in a background task. When the
  first announcement cannot be sent (interface down) the address is removed again and
  start() raises: never half-started. The probe window dominates the time start() takes
  (about 3 ms beyond ``probe_timeout`` here).
- **stop()** cancels a running announcement burst first (a late announcement would pull the
  neighbours back from the node that took over), then removes the address. Absent address or
  missing interface: success (nothing of ours answers ARP).
- **status()**: ``running`` while the address is on the interface, else ``stopped``; DriverError
  only when the interface is missing. A failed background announcement shows in ``detail``.
- **adopt()**: True when the address is already on the interface (an agent restart keeps its
  VIP); False when it is not or the interface is missing.
- ``promote``/``demote`` raise DriverError.

Needs ``CAP_NET_ADMIN`` (netlink) and ``CAP_NET_RAW`` (packet sockets).
"""

from __future__ import annotations

import asyncio
import errno
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from typing import Any

from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from corral.drivers.base import DriverError, DriverStatus, NodeContext, NodeFault
from corral.net import arp
from corral.net.arp import LinkError, arp_who_has

__all__ = ["VipAddress", "arp_who_has"]

IFA_F_NODAD = 0x02
_FAMILY = {4: 2, 6: 10}  # AF_INET, AF_INET6


class VipAddress:
    """Driver for one ``vip:`` instance (see the module docstring for the contract)."""

    def __init__(
        self,
        name: str,
        address: IPv4Interface | IPv6Interface,
        node: NodeContext,
        *,
        interface: str | None = None,
        probe_timeout: float = 0.1,
        announce_count: int = 3,
        announce_interval: float = 0.2,
    ) -> None:
        if probe_timeout < 0 or announce_interval < 0 or announce_count < 1:
            raise ValueError("probe_timeout and announce_interval >= 0, announce_count >= 1")
        self.name = name
        self.address = address
        self.ip: IPv4Address | IPv6Address = address.ip
        self.interface = interface
        self.probe_timeout = probe_timeout
        self.announce_count = announce_count
        self.announce_interval = announce_interval
        self._node = node
        self._burst: asyncio.Task[None] | None = None
        self._burst_error: str | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # --- the Driver protocol --------------------------------------------------------------

    async def start(self) -> None:
        async with AsyncIPRoute() as ipr:
            index, ifname = await self._link(ipr)
            if await self._prefix_present(ipr, index) is not None:
                return
            link = self._open(ifname)
            try:
                await self._probe(link)
                await self._add(ipr, index, ifname)
                self._stop_burst()
                self._burst_error = None
                try:
                    arp.announce_on(link, self.ip)
                except LinkError as exc:
                    await self._delete(ipr, index, self.address.network.prefixlen)
                    raise DriverError(
                        f"{self.name}: cannot announce {self.ip} ({exc}); address removed again"
                    ) from exc
            except BaseException:
                self._close_later(link)
                raise
        self._burst = asyncio.create_task(
            self._announce_rest(link), name=f"vip-announce-{self.name}"
        )

    async def stop(self) -> None:
        self._stop_burst()
        async with AsyncIPRoute() as ipr:
            try:
                index, _ = await self._link(ipr)
            except DriverError:
                return  # no interface: the address cannot be held here
            prefixlen = await self._prefix_present(ipr, index)
            if prefixlen is not None:
                await self._delete(ipr, index, prefixlen)

    async def status(self) -> DriverStatus:
        async with AsyncIPRoute() as ipr:
            index, ifname = await self._link(ipr)
            present = await self._prefix_present(ipr, index) is not None
        if not present:
            return DriverStatus("stopped", f"{self.ip} not on {ifname}")
        detail = f"{self.ip} on {ifname}"
        if self._burst_error is not None:
            detail += f" (announcement failed: {self._burst_error})"
        return DriverStatus("running", detail)

    async def adopt(self) -> bool:
        async with AsyncIPRoute() as ipr:
            try:
                index, _ = await self._link(ipr)
            except DriverError:
                return False
            return await self._prefix_present(ipr, index) is not None

    async def promote(self) -> None:
        raise DriverError(f"{self.name}: a VIP has no promoted role")

    async def demote(self) -> None:
        raise DriverError(f"{self.name}: a VIP has no promoted role")

    # --- announcements --------------------------------------------------------------------

    @property
    def announcing(self) -> bool:
        """True while the background announcement burst runs."""
        return self._burst is not None and not self._burst.done()

    def _open(self, ifname: str) -> arp.LinkSocket:
        """The packet socket for probe and burst (opening takes microseconds: a socket made
        with protocol 0 and bound once never waits for the kernel's RCU grace period)."""
        try:
            return arp.LinkSocket(ifname, arp.ethertype_for(self.ip))
        except LinkError as exc:
            raise DriverError(f"{self.name}: cannot probe for {self.ip}: {exc}") from exc

    async def _probe(self, link: arp.LinkSocket) -> None:
        """DriverError when another host answers for the address (see the contract).

        The probe blocks a thread for ``probe_timeout``. A cancel of start() waits for that
        thread to end before it propagates: the caller then closes ``link``, and a socket
        closed under a thread could have its fd number reused by another socket meanwhile.
        """
        thread = asyncio.ensure_future(
            asyncio.to_thread(arp.probe_on, link, self.ip, self.probe_timeout)
        )
        try:
            conflict = await asyncio.shield(thread)
        except asyncio.CancelledError:
            await asyncio.wait([thread])
            raise
        except LinkError as exc:
            raise DriverError(f"{self.name}: cannot probe for {self.ip}: {exc}") from exc
        if conflict is not None and conflict.probing:
            raise NodeFault(
                f"{self.name}: {conflict.mac} probes for {self.ip} at the same moment;"
                " not taking it (both back off)"
            )
        if conflict is not None:
            raise NodeFault(
                f"{self.name}: {self.ip} is answered by {conflict.mac}: another host holds it;"
                " not taking it"
            )

    async def _announce_rest(self, link: arp.LinkSocket) -> None:
        """The rest of the burst, on the socket the probe used; closes it at the end.

        Each announcement is sent only while the address is still on the interface: one
        removed behind our back must not keep pulling traffic to this node. A cancel (stop(),
        a new start()) lands at an ``await``, so no announcement follows it.
        """
        try:
            for _ in range(self.announce_count - 1):
                await asyncio.sleep(self.announce_interval)
                async with AsyncIPRoute() as ipr:
                    index, _ = await self._link(ipr)
                    if await self._prefix_present(ipr, index) is None:
                        return
                arp.announce_on(link, self.ip)
        except (LinkError, DriverError) as exc:
            self._burst_error = str(exc)  # shown by status(); the address itself stays
        finally:
            self._close_later(link)

    def _stop_burst(self) -> None:
        """Cancel the burst; it sends nothing more (its socket closes in the background)."""
        if self._burst is not None:
            self._burst.cancel()
            self._burst = None

    def _close_later(self, link: arp.LinkSocket) -> None:
        """Close ``link`` in a thread (``close`` waits for an RCU grace period, 10-30 ms)."""
        task = asyncio.create_task(asyncio.to_thread(link.close))
        self._closing.add(task)  # a strong reference until it is done
        task.add_done_callback(self._closing.discard)

    # --- netlink ----------------------------------------------------------------------------

    async def _link(self, ipr: Any) -> tuple[int, str]:
        """(index, name) of the interface; DriverError when it is missing."""
        if self.interface is not None:
            indexes = await ipr.link_lookup(ifname=self.interface)
            if not indexes:
                raise DriverError(
                    f"{self.name}: no interface {self.interface!r} in this network namespace"
                )
            return int(indexes[0]), self.interface
        node_ip = ip_interface(self._node.address).ip
        # Dumps are read to their end: a half-read dump would leave replies in the socket.
        for msg in [m async for m in await ipr.get_addr(family=_FAMILY[node_ip.version])]:
            if _addr_of(msg) == node_ip:
                index = int(msg["index"])
                for link in [m async for m in await ipr.get_links(index)]:
                    return index, str(link.get_attr("IFLA_IFNAME"))
        raise DriverError(
            f"{self.name}: no interface holds the node address {node_ip} in this network namespace"
        )

    async def _prefix_present(self, ipr: Any, index: int) -> int | None:
        """The prefix length the VIP has on interface ``index``, None when it is absent."""
        family = _FAMILY[self.ip.version]
        for msg in [m async for m in await ipr.get_addr(index=index, family=family)]:
            if _addr_of(msg) == self.ip:
                return int(msg["prefixlen"])
        return None

    async def _add(self, ipr: Any, index: int, ifname: str) -> None:
        kwargs: dict[str, Any] = {}
        if self.ip.version == 6:
            kwargs["flags"] = IFA_F_NODAD
        try:
            await ipr.addr(
                "add",
                index=index,
                address=str(self.ip),
                prefixlen=self.address.network.prefixlen,
                **kwargs,
            )
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return  # added meanwhile (by a racing start of ours): it is there
            raise DriverError(
                f"{self.name}: cannot add {self.address} to {ifname}: {_reason(exc)}"
            ) from exc

    async def _delete(self, ipr: Any, index: int, prefixlen: int) -> None:
        try:
            await ipr.addr("del", index=index, address=str(self.ip), prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENODEV):
                return  # already gone, with or without its interface
            raise DriverError(f"{self.name}: cannot remove {self.ip}: {_reason(exc)}") from exc


def _addr_of(msg: Any) -> IPv4Address | IPv6Address | None:
    """The local address of an RTM_NEWADDR message (IFA_LOCAL for IPv4, which differs from
    IFA_ADDRESS on point-to-point links; IPv6 has only IFA_ADDRESS)."""
    value = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if value is None:
        return None
    return ip_interface(str(value)).ip


def _reason(exc: NetlinkError) -> str:
    args = exc.args
    return str(args[1]) if len(args) > 1 else str(exc)
