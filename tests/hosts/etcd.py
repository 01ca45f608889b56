"""A real one-member etcd on loopback for the host tests, started and stopped synchronously
(the tests run the CLI, which runs its own event loop), and a bounded polling helper."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from corral.store.embedded import MemberConfig
from corral.store.lab import free_ports


def eventually(probe: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
            return b"true" in r.read()
    except OSError:
        return False


@contextlib.contextmanager
def running_etcd(base: Path) -> Iterator[str]:
    """Its client URL while it runs; killed (by pid) afterwards, also when the test fails."""
    client, peer = free_ports(2)
    config = MemberConfig("m0", base / "m0", f"http://127.0.0.1:{client}",
                          f"http://127.0.0.1:{peer}")  # fmt: skip
    with (base / "etcd.log").open("wb") as log:
        proc = subprocess.Popen(config.argv(), stdout=log, stderr=log, start_new_session=True)
    try:
        eventually(lambda: healthy(config.client_url), 30, "etcd healthy")
        yield config.client_url
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
