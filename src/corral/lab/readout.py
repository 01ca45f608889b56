"""What a lab's cluster says about itself, read from the client namespace, and the client load
started there: shared by the chaos runner and the soak benchmark.

- :func:`read_events`: corral's own event log (``corral events --json``), as dicts;
- :func:`read_failcounts`: the ``failcounts/`` records (:mod:`corral.lab.gateway`);
  :func:`failcount` reads the count of one;
- :func:`start_client`: :mod:`corral.lab.client` in the client namespace, waited for until it
  sent its first request.

Contract: reads never raise for an unreachable cluster (an empty list, None); what they read is
corral's own account, for reports: the chaos checker judges without it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corral.lab import gateway
from corral.lab.lab import Lab, LabError
from corral.lab.netns import NetnsError
from corral.records import FailCountRecord

ERRORS = (LabError, NetnsError, OSError, subprocess.SubprocessError, ValueError)


def read_events(lab: Lab, limit: int = 1000, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The last ``limit`` events (the store keeps 1000), oldest first; [] when unreadable."""
    argv = [sys.executable, "-m", "corral.cli.main", "events", "--json", "-n", str(limit)]
    argv += ["--spec", str(lab.spec_file)]
    events: list[dict[str, Any]] = []
    with contextlib.suppress(*ERRORS):
        out = subprocess.run(
            lab.exec_argv("client", argv), capture_output=True, text=True, timeout=timeout
        ).stdout
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if isinstance(ev, dict):
                    events.append(ev)
    return events


def event_key(ev: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two events apart when the log is read more than once."""
    return (ev.get("time"), ev.get("node"), ev.get("kind"), ev.get("reason"))


def read_failcounts(lab: Lab) -> dict[str, Any] | None:
    """``<node>/<resource>`` -> failcount record (decoded JSON); None when no member answers."""
    state = lab.state()
    prefix = f"/corral/{state['cluster']}/failcounts/".encode()
    ends, tls = lab.store_endpoints(), state.get("tls", ())
    return gateway.range_prefix(state["client"]["ns"], ends, prefix, tls=tls)


def failcount(value: object) -> int:
    """The count of a failcount record as a range read decoded it (unreadable: 0)."""
    record = FailCountRecord.parse_value(value)
    return record.count if record is not None else 0


def start_client(
    lab: Lab,
    urls: Sequence[str],
    out: Path,
    *,
    interval: float,
    timeout: float,
    duration: float,
    wait: float = 20.0,
) -> subprocess.Popen[bytes]:
    """The load client on ``urls`` (one GET per URL every ``interval``), writing its records
    to ``out`` when it ends (after ``duration`` seconds, or at SIGTERM). Returns once it sent
    its first request, it died, or ``wait`` seconds passed."""
    ready = out.with_name(out.name + ".ready")
    argv = [sys.executable, "-m", "corral.lab.client", "--interval", f"{interval:g}"]
    argv += ["--timeout", f"{timeout:g}", "--duration", f"{duration:g}"]
    argv += ["--out", str(out), "--ready", str(ready), *urls]
    client = subprocess.Popen(lab.exec_argv("client", argv))
    deadline = time.monotonic() + wait
    while not ready.exists() and time.monotonic() < deadline and client.poll() is None:
        time.sleep(0.05)
    return client
