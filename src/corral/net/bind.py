"""Bind UDP and TCP on one port (shared by the gossip transport and the DNS responder).

With ``port=0`` the OS picks a free UDP port and TCP binds the same number; when that TCP port
is taken, both are released and another pair is tried (a few times). With a fixed port a
failure raises ``OSError`` at once. Nothing stays bound when it raises.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

TcpHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TRIES = 8


async def bind_udp_and_tcp(
    host: str,
    port: int,
    protocol: Callable[[], asyncio.DatagramProtocol],
    handler: TcpHandler,
) -> tuple[asyncio.DatagramTransport, asyncio.Server, int]:
    """(UDP transport on the event loop, TCP server, the port both are bound to)."""
    sock, server, bound = await bind_socket_and_tcp(host, port, handler)
    try:
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(protocol, sock=sock)
    except BaseException:
        sock.close()
        server.close()
        raise
    return udp, server, bound


async def bind_socket_and_tcp(
    host: str, port: int, handler: TcpHandler
) -> tuple[socket.socket, asyncio.Server, int]:
    """(bound non-blocking UDP socket, TCP server, the port both are bound to): for a socket
    read outside the event loop (:class:`~corral.net.pump.PacketPump`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt in range(TRIES):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        bound = int(sock.getsockname()[1])
        try:
            server = await asyncio.start_server(handler, host, bound)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError) or port or attempt == TRIES - 1:
                raise
            continue
        return sock, server, bound
    raise OSError(f"no free UDP+TCP port pair on {host}")  # not reached: the loop raises
