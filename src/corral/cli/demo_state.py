"""The demo's stateful half: real MariaDB Galera and RabbitMQ through the node power-off.

When the lab runs the real servers (``lab.json`` ``servers``), the tour around the power-off
(:func:`corral.cli.demo._failover`) also:

- makes a database user (as root on a member's socket: Galera replicates it) and runs a write
  load through the victim's VIP, on HAProxy's balanced galera port (the writer backend): a
  row every 20 ms, each counted only once the server acknowledged it;
- declares a quorum queue on the victim's broker (its leader there) and publishes messages
  with publisher confirms before the power-off;
- afterwards reads every row back through another VIP and drains the queue from a surviving
  broker, and prints: writes acknowledged, how long writes failed, acknowledged writes lost;
  messages confirmed and kept.

Without the real servers (stand-ins) it does nothing and says so once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from corral.spec import Spec, load_spec_text
from corral.spec.paths import for_node

if TYPE_CHECKING:
    from corral.lab.lab import Lab

PY = sys.executable
DB_USER, QUEUE, MESSAGES = "demo", "demo-orders", 300
INTERVAL, WRITE_SECONDS = 0.02, 12.0


class StateTour:
    """The stateful clients of one demo (see the module docstring)."""

    def __init__(self, lab: Lab, console: Console) -> None:
        self.lab, self.console = lab, console
        for name in ("aiormq", "aio_pika"):  # a broker powered off mid-read is expected here
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.spec: Spec = load_spec_text(lab.spec_file.read_text())
        real = set(lab.state().get("servers", []))
        res = self.spec.resources.items()
        self.db = next((n for n, r in res if r.galera and r.balance and "galera" in real), None)
        self.mq = next((n for n, r in res if r.rabbitmq and "rabbitmq" in real), None)
        self.writer: subprocess.Popen[bytes] | None = None
        self.confirmed: set[str] = set()
        self.db_pw = lab.dir / "secrets" / "demo-db.pw"
        self.out = lab.dir / "demo-writes.json"

    @property
    def active(self) -> bool:
        return self.db is not None or self.mq is not None

    def _address(self, node: str) -> str:
        return str(self.spec.nodes[node].address)

    def before(self, victim: str, vip: str, view: dict[str, Any]) -> None:
        """Publish to the queue on ``victim`` and start the write load through ``vip``
        (``view``: ``corral status --json``, for the writer's name)."""
        if self.mq is not None:
            began = time.monotonic()
            every = [self._address(n) for n in self.spec.nodes]
            self.confirmed = asyncio.run(_publish(self, self._address(victim), MESSAGES, every))
            self.console.print(
                f"queue {QUEUE} (quorum, 3 replicas) declared on {victim}: "
                f"{len(self.confirmed)} messages confirmed in {time.monotonic() - began:.1f} s"
            )
        if self.db is not None:
            self._start_writes(vip, writer(view, self.db))

    def _start_writes(self, vip: str, writer: str) -> None:
        from corral.lab.servers import write_secrets
        from corral.lab.workload import grant

        assert self.db is not None
        g = self.spec.resources[self.db]
        assert g.galera is not None and g.balance is not None
        write_secrets([self.db_pw])
        sockets = [
            Path(for_node(g.galera.base_dir, n)) / self.db / "run" / "mysqld.sock"
            for n in self.lab.state()["nodes"]
        ]
        grant(sockets, DB_USER, self.db_pw.read_text().strip(), timeout=30)
        ready = self.out.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        self.out.unlink(missing_ok=True)
        argv = [PY, "-m", "corral.lab.workload", "writes", "--host", vip]
        argv += ["--port", str(g.balance.port), "--user", DB_USER]
        argv += ["--password-file", str(self.db_pw), "--duration", f"{WRITE_SECONDS:g}"]
        argv += ["--interval", f"{INTERVAL:g}", "--out", str(self.out), "--ready", str(ready)]
        self.writer = subprocess.Popen(self.lab.exec_argv("client", argv))
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and self.writer.poll() is None:
            time.sleep(0.02)
        self.console.print(
            f"a client writes a row every {INTERVAL * 1000:.0f} ms to {vip}:{g.balance.port} "
            f"(HAProxy sends it to the one writer, {writer}), through the power-off"
        )

    def after(self, fault_wall: float, survivor: str, read_vip: str) -> None:
        """Print what the database and the queue kept (see the module docstring)."""
        if self.writer is not None:
            self.writer.wait(timeout=WRITE_SECONDS + 60)
            self._report_writes(fault_wall, read_vip)
        if self.mq is not None:
            began = time.monotonic()
            got = asyncio.run(_drain(self, self._address(survivor)))
            kept = len(self.confirmed & got)
            self.console.print(
                f"queue {QUEUE}: {kept} of {len(self.confirmed)} confirmed messages kept, "
                f"read back from {survivor} in {time.monotonic() - began:.1f} s "
                f"({len(self.confirmed) - kept} lost)"
            )

    def _report_writes(self, fault_wall: float, read_vip: str) -> None:
        from corral.lab.workload import summarize_writes

        assert self.db is not None
        try:
            data: dict[str, Any] = json.loads(self.out.read_text())
        except (OSError, ValueError):
            self.console.print("database: the write client left no record")
            return
        argv = [PY, "-m", "corral.lab.workload", "read", "--host", read_vip]
        argv += ["--user", DB_USER, "--password-file", str(self.db_pw), "--duration", "30"]
        done = subprocess.run(
            self.lab.exec_argv("client", argv), capture_output=True, text=True, timeout=90
        )
        try:
            present = set(json.loads(done.stdout))
        except ValueError:
            self.console.print(f"database: the rows could not be read back: {done.stderr[-300:]}")
            return
        got = summarize_writes(data["attempts"], data["interval"], fault_wall, present)
        failing = (
            f"writes failed for {got['failed_s']:.2f} s ({got['failed']} attempts failed)"
            if got["failed"]
            else "no write failed"
        )
        self.console.print(
            f"database: {got['acked']} writes acknowledged ({got['acked_after_fault']} after "
            f"the power-off); {failing}; {len(got['lost'])} acknowledged writes lost "
            f"({len(present)} rows read back through {read_vip})"
        )


def writer(view: dict[str, Any], backend: str) -> str:
    """The node(s) the load balancers send ``backend`` to (``ready``), from a status view:
    for a galera backend, the one writer of its record."""
    servers = view.get("backends", {}).get(backend, {})
    ready = sorted(n for n, lbs in servers.items() if "ready" in lbs.values())
    return ", ".join(ready) or "none yet"


def _login(tour: StateTour) -> tuple[str, str, str]:
    assert tour.mq is not None
    r = tour.spec.resources[tour.mq].rabbitmq
    assert r is not None and r.password is not None and r.password.file is not None
    return r.user, Path(r.password.file).read_text().strip(), tour.lab.state()["client"]["ns"]


async def _publish(tour: StateTour, host: str, count: int, every: list[str]) -> set[str]:
    """Publish once every broker in ``every`` accepts connections: a broker serves only once
    it has joined the cluster, so the quorum queue is declared with a member on each (declared
    before the others joined, it would live on ``host`` alone and die with it)."""
    from corral.lab.workload import publish, wait_serving

    user, password, ns = _login(tour)
    await wait_serving(every, user, password, ns)
    return await publish(host, user, password, ns, QUEUE, count)


async def _drain(tour: StateTour, host: str) -> set[str]:
    from corral.lab.workload import drain

    user, password, ns = _login(tour)
    return await drain(host, user, password, ns, QUEUE, len(tour.confirmed), timeout=60)
