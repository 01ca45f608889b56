"""The notify protocol and the journald protocol against real Unix datagram sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.agent.notify import notify_loop, status_line
from corral.journal import JournalHandler, encode_field, stderr_is_journal
from corral.sdnotify import Notifier, socket_address, watchdog_period


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_not_under_systemd_nothing_is_sent() -> None:
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None


def test_datagrams_reach_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "OTHER": "kept"}
    notifier = Notifier.from_environ(env, take=True)
    assert notifier is not None
    assert notifier.watchdog == 10.0
    assert env == {"OTHER": "kept"}  # services and the guard do not inherit the socket
    assert notifier.send("READY=1", "STATUS=registered")
    assert sock.recv(4096) == b"READY=1\nSTATUS=registered"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"corral-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier is not None
        assert notifier.send("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
        notifier.close()
    assert socket_address("@x") == b"\0x"


def test_a_gone_socket_costs_a_notification_not_the_agent(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.send("READY=1")
    assert not notifier.send("WATCHDOG=1")  # and again: no exception, logged once
    notifier.close()


def test_watchdog_meant_for_another_pid_is_ignored() -> None:
    pid = os.getpid()
    assert watchdog_period({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(pid)}, pid) == 4.0
    assert watchdog_period({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}, pid) is None


def fake_agent(registered: bool) -> Any:
    return SimpleNamespace(
        node="n1",
        registration=7 if registered else None,
        lease=0x1F if registered else None,
        controller=SimpleNamespace(active=True),
        services={"web": None},
    )


async def test_ready_only_once_registered(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    agent = fake_agent(registered=False)
    notifier = Notifier(path, watchdog=0.4)
    task = asyncio.create_task(notify_loop(agent, notifier))
    first = (await asyncio.to_thread(sock.recv, 4096)).decode().splitlines()
    assert "READY=1" not in first
    assert first[0] == "WATCHDOG=1"
    assert "STATUS=node n1: not registered (waiting for the store)" in first
    agent.registration, agent.lease = 7, 0x1F
    seen: list[str] = []
    while "READY=1" not in seen:
        seen = (await asyncio.to_thread(sock.recv, 4096)).decode().splitlines()
    assert "STATUS=node n1: registered, lease 1f, controller, 1 service(s) here" in seen
    task.cancel()
    notifier.close()
    assert status_line(agent).startswith("node n1: registered")


def test_journal_fields_encoding() -> None:
    assert encode_field("A", "b") == b"A=b\n"
    assert encode_field("A", "x\ny") == b"A\n" + struct.pack("<Q", 3) + b"x\ny\n"


def parse_entry(data: bytes) -> dict[str, str]:
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            i = nl + 1
        else:
            size = struct.unpack("<Q", data[nl + 1 : nl + 9])[0]
            fields[line.decode()] = data[nl + 9 : nl + 9 + size].decode()
            i = nl + 10 + size
    return fields


def test_journal_entries_carry_node_and_resource(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    handler = JournalHandler({"CORRAL_NODE": "n1", "CORRAL_CLUSTER": "c1"}, path)
    log = logging.getLogger("corral.test.journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("started %s\nsecond line", "web", extra={"resource": "web"})
        fields = parse_entry(sock.recv(65536))
        assert fields["MESSAGE"] == "started web\nsecond line"
        assert fields["CORRAL_NODE"] == "n1"
        assert fields["CORRAL_RESOURCE"] == "web"
        assert fields["PRIORITY"] == "4"
        assert fields["SYSLOG_IDENTIFIER"] == "corral"
        log.error("x" * 300_000)  # larger than a datagram: through a sealed memfd
        data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
        assert data == b"" and len(fds) == 1
        with os.fdopen(fds[0], "rb") as memfd:
            memfd.seek(0)  # journald maps it from the start
            assert parse_entry(memfd.read())["MESSAGE"] == "x" * 300_000
    finally:
        log.removeHandler(handler)
        handler.close()


def test_a_gone_journal_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = JournalHandler({}, str(tmp_path / "none"))
    handler.emit(logging.makeLogRecord({"name": "corral.x", "msg": "kept", "levelno": 20}))
    handler.close()
    assert "corral.x kept" in capsys.readouterr().err


def test_journal_stream_must_be_our_stderr() -> None:
    st = os.fstat(sys.stderr.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not stderr_is_journal({})
