"""PacketPump: the thread that reads a real UDP socket and runs its owner's timer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from corral.net.pump import PacketPump


def wait_for(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class Owner:
    """Records what the pump calls, and on which thread."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[str, int], int]] = []
        self.dues: list[float] = []
        self.due_at = float("inf")
        self.fail_next = False

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug in one packet's path")
        self.datagrams.append((data, addr, threading.get_ident()))

    def on_due(self) -> None:
        self.dues.append(time.monotonic())
        self.due_at = float("inf")  # one shot, like a protocol timer that re-arms itself

    def due(self) -> float:
        return self.due_at


@pytest.fixture
def pumped() -> Iterator[tuple[PacketPump, Owner, socket.socket, socket.socket]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    owner = Owner()
    pump = PacketPump(sock, owner.on_datagram, owner.on_due, owner.due, name="test-pump")
    pump.start()
    try:
        yield pump, owner, sock, peer
    finally:
        pump.stop()
        sock.close()
        peer.close()


def test_datagrams_reach_the_owner_on_the_pump_thread(
    pumped: tuple[PacketPump, Owner, socket.socket, socket.socket],
) -> None:
    pump, owner, sock, peer = pumped
    for i in range(100):  # more than one burst
        peer.sendto(b"p%d" % i, sock.getsockname())
    wait_for(lambda: len(owner.datagrams) == 100)
    assert [d for d, _, _ in owner.datagrams] == [b"p%d" % i for i in range(100)]
    assert {a for _, a, _ in owner.datagrams} == {peer.getsockname()}
    assert {t for _, _, t in owner.datagrams} != {threading.get_ident()}
    assert pump.running


def test_a_failing_callback_does_not_stop_the_pump(
    pumped: tuple[PacketPump, Owner, socket.socket, socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, owner, sock, peer = pumped
    owner.fail_next = True
    peer.sendto(b"poison", sock.getsockname())
    peer.sendto(b"fine", sock.getsockname())
    wait_for(lambda: len(owner.datagrams) == 1)
    assert owner.datagrams[0][0] == b"fine"
    assert "a callback failed" in caplog.text


def test_the_timer_fires_at_its_deadline_and_a_poke_brings_it_forward(
    pumped: tuple[PacketPump, Owner, socket.socket, socket.socket],
) -> None:
    pump, owner, _, _ = pumped
    start = time.monotonic()
    owner.due_at = start + 0.1
    pump.poke()
    wait_for(lambda: len(owner.dues) == 1)
    assert owner.dues[0] >= start + 0.1  # never early
    # a far deadline, then an earlier one: without the poke it would sleep 30 s
    owner.due_at = time.monotonic() + 30
    pump.poke()
    time.sleep(0.05)
    begun = time.monotonic()
    owner.due_at = begun + 0.05
    pump.poke()
    wait_for(lambda: len(owner.dues) == 2, within=2.0)
    assert owner.dues[1] - begun < 1.0
    assert len(owner.dues) == 2  # one shot each: a passed deadline is not re-run


def test_stop_ends_the_thread_and_is_idempotent() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    owner = Owner()
    pump = PacketPump(sock, owner.on_datagram, owner.on_due, owner.due)
    pump.start()
    with pytest.raises(RuntimeError, match="already started"):
        pump.start()
    began = time.monotonic()
    pump.stop()
    assert time.monotonic() - began < 1.0 and not pump.running
    pump.stop()
    pump.poke()  # harmless after stop: the pipe is closed, nothing is written
    sock.close()


async def test_a_threaded_transport_runs_the_timer_on_its_owners_clock() -> None:
    """The owner's deadlines are instants of its own clock (here 1,000 s ahead of
    CLOCK_MONOTONIC): the pump must wait on that clock, not on its default one."""
    from corral.net.transport import Timer, UdpTransport, free_port

    def ahead() -> float:
        return time.monotonic() + 1000.0

    fired: list[float] = []
    deadline = ahead() + 0.1
    due = [deadline]

    def on_due() -> None:
        fired.append(ahead())
        due[0] = float("inf")

    transport = UdpTransport("127.0.0.1", free_port(), threaded=True)
    await transport.start(lambda *_: None, Timer(lambda: due[0], on_due, ahead))
    try:
        wait_for(lambda: bool(fired), within=2.0)
        # not before the deadline on the owner's clock (the start itself may take a while,
        # so the time is measured from the deadline, not from after the start)
        assert deadline <= fired[0] < deadline + 1.0
    finally:
        await transport.close()
