"""Bind UDP and TCP on one port (shared by the gossip transport and the DNS responder).

With ``port=0`` the OS picks a free UDP port and TCP binds the same number; when that TCP port
is taken, both are released and another pair is tried (a few times). With a fixed port a
failure raises ``OSError`` at once. Nothing stays bound when it raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

TcpHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TRIES = 8


async def bind_udp_and_tcp(
    host: str,
    port: int,
    protocol: Callable[[], asyncio.DatagramProtocol],
    handler: TcpHandler,
) -> tuple[asyncio.DatagramTransport, asyncio.Server, int]:
    """(UDP transport, TCP server, the port both are bound to)."""
    loop = asyncio.get_running_loop()
    for attempt in range(TRIES):
        udp, _ = await loop.create_datagram_endpoint(protocol, local_addr=(host, port))
        bound = int(udp.get_extra_info("sockname")[1])
        try:
            server = await asyncio.start_server(handler, host, bound)
        except OSError:
            udp.close()
            if port or attempt == TRIES - 1:
                raise
            continue
        return udp, server, bound
    raise OSError(f"no free UDP+TCP port pair on {host}")  # not reached: the loop raises
