"""The lab's HTTP stand-in (corral/lab/app.py) stays quiet when a client hangs up early, and
only then: every other error still shows its traceback."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from corral.lab import app
from corral.store.lab import free_ports


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a client that gives up does (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_hanging_up_early_leave_no_traceback(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    mode = tmp_path / "mode"
    mode.write_text("ok")
    proc = subprocess.Popen(
        [sys.executable, app.__file__, "127.0.0.1", str(port), str(mode)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the stand-in never answered"
                time.sleep(0.05)
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            if i % 2:  # mid-request: the server's read is reset
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x")
                time.sleep(0.01)
            else:  # right after the request: its read or its answer is reset
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reset(sock)
        assert urllib.request.urlopen(url, timeout=1).read() == b"ok 127.0.0.1\n"  # serves on
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"Traceback" not in err and b"Exception occurred" not in err, err.decode()[-2000:]


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError()])
def test_hang_ups_are_silent(error: OSError, capsys: pytest.CaptureFixture[str]) -> None:
    server = app.Server(("127.0.0.1", 0), app.handler("h", Path("/nonexistent")))
    try:
        try:
            raise error
        except OSError:
            server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.server_close()
    assert capsys.readouterr().err == ""


def test_other_errors_still_show_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    server = app.Server(("127.0.0.1", 0), app.handler("h", Path("/nonexistent")))
    try:
        try:
            raise ValueError("a bug in the handler")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug in the handler" in err
