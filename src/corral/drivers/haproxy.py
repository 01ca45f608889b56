"""The HAProxy driver: one master-worker HAProxy per LB node, configured from the spec.

Contract (in addition to :mod:`corral.drivers.base`):

- **Files.** ``<state_dir>/run/<name>/`` (the run directory) holds ``haproxy.cfg`` (the
  running configuration), ``haproxy.sock`` (admin runtime API), ``master.sock`` (master CLI),
  ``haproxy.state`` (server states saved before a reload) and ``haproxy.pid`` (HAProxy's own
  pid file: the master). ``<state_dir>/run/<name>.pid`` is corral's JSON record of the master
  (pid, start time, boot id, as for the process driver) and ``<state_dir>/logs/<name>.log``
  takes HAProxy's stderr (notices and alerts: server state changes, reload outcomes).
- **Validation first.** A configuration is written to ``haproxy.cfg.new`` and checked with
  ``haproxy -c -f``; only a valid one replaces ``haproxy.cfg`` (``rename``, atomic). An
  invalid one raises DriverError carrying haproxy's own message and leaves the running
  configuration file and the running HAProxy untouched.
- **start()** renders the configuration from ``spec_provider()`` (and ``servers_provider()``),
  validates it, then runs ``haproxy -W -S master.sock -f haproxy.cfg`` in a session of its own,
  and returns once the master reports a worker and the runtime API answers; a master that dies
  first raises with the log's last lines. A no-op when HAProxy already runs. The pid file is
  named by ``pidfile`` in the rendered ``global`` section, not ``-p`` too (HAProxy alerts when
  it is given twice).
- **stop()**: SIGUSR1 to the master (soft stop: listeners close at once, connections finish,
  the master exits after its workers), then after ``stop_timeout`` SIGKILL to the whole process
  group (master and workers share it). Idempotent.
- **status()** / **adopt()**: as the process driver: the master is known by (boot id, pid,
  start time) and must lead its own session. HAProxy's reload re-executes the master under
  the same pid, which keeps its start time, so a reload does not look like a new process.
- **apply_config(text)**: validate; when its :func:`~corral.lb.config.structure` equals the
  running one's, install it without a reload (comments only) and return False; else save
  server states (``show servers state`` -> ``haproxy.state``), install, reload through the
  master CLI and wait until ``show proc`` confirms a new worker; return True. Not running:
  install only, return False.
- **set_servers(desired)**: runtime API only (see :mod:`corral.lb.sync`): the commands that
  can run are sent; the plan is returned, so the caller sees whether a reload is still needed.
  The servers of a balanced galera service that leave rotation lose their sessions
  (``cut``: one writer, rule 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from corral.drivers import _files
from corral.drivers._exec import run_command
from corral.drivers._group import spawn_service, stop_group
from corral.drivers._owned import OwnedInstance
from corral.drivers.base import DriverError, DriverStatus, NodeContext
from corral.drivers.process import describe_exit
from corral.lb import config, sync
from corral.lb.runtime import MasterCli, Runtime
from corral.spec.model import Resource, Spec

_ALERT_PREFIX = re.compile(r"^\[ALERT\]\s+\(\d+\)\s*:\s*(config\s*:\s*)?")
ServersProvider = Callable[[], Mapping[str, Sequence[config.Server]]]


class HaproxyService:
    """Driver for the ``haproxy:`` resource on one node (see the module contract)."""

    def __init__(
        self,
        name: str,
        res: Resource,
        node: NodeContext,
        spec_provider: Callable[[], Spec],
        *,
        servers_provider: ServersProvider | None = None,
        haproxy: str = "haproxy",
        run_dir: Path | None = None,
        stop_timeout: float = 10.0,
        kill_timeout: float = 5.0,
        ready_timeout: float = 10.0,
        check_timeout: float = 30.0,
    ) -> None:
        if res.haproxy is None:
            raise DriverError(f"{name}: not a haproxy resource")
        self.name = name
        self.node = node
        self.run_dir = run_dir or node.state_dir / "run" / _files.checked_name(name)
        self.config_path = self.run_dir / config.CONFIG_FILE
        self.log_path = _files.log_path(node, name)
        self.pid_path = _files.pid_path(node, name)
        self.runtime = Runtime(self.run_dir / config.SOCKET)
        self.master = MasterCli(self.run_dir / config.MASTER_SOCKET)
        self.stop_timeout = stop_timeout
        self._spec_provider = spec_provider
        self._servers_provider = servers_provider
        self._haproxy = haproxy
        self._kill_timeout = kill_timeout
        self._ready_timeout = ready_timeout
        self._check_timeout = check_timeout
        self._owned = OwnedInstance(self.pid_path, self.log_path)
        self._lock = asyncio.Lock()  # no reload during a start or stop

    # --- configuration -------------------------------------------------------------------

    def render_config(self) -> str:
        """The configuration the spec asks for now (pure rendering, see corral.lb.config)."""
        servers = self._servers_provider() if self._servers_provider else {}
        try:
            return config.render(self._spec_provider(), self.node, servers, self.run_dir)
        except ValueError as exc:
            raise DriverError(f"{self.name}: cannot render the configuration: {exc}") from exc

    def backends(self) -> dict[str, config.Backend]:
        servers = self._servers_provider() if self._servers_provider else {}
        return {b.name: b for b in config.backends(self._spec_provider(), servers)}

    async def validate(self, text: str) -> Path:
        """Write ``text`` as the candidate file and check it; its path when valid.

        DriverError with haproxy's message otherwise (the candidate is removed)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.run_dir / config.STATE_FILE
        if not state.exists():
            state.write_text("1\n", encoding="utf-8")  # an empty state is valid; silences -c
        candidate = self.run_dir / (config.CONFIG_FILE + ".new")
        candidate.write_text(text, encoding="utf-8")
        done = await run_command(
            [self._haproxy, "-c", "-f", str(candidate)], timeout=self._check_timeout
        )
        if done.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
            message = _alerts(done.stdout + done.stderr) or done.summary() or "no message"
            raise DriverError(f"{self.name}: haproxy -c refused the configuration: {message}")
        return candidate

    async def apply_config(self, text: str) -> bool:
        """Validate and install ``text``; reload when its structure changed (module doc)."""
        async with self._lock:
            candidate = await self.validate(text)
            try:
                old = self.config_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                old = None
            running = (await self.status()).state == "running"
            if old is not None and config.structure(old) == config.structure(text):
                os.replace(candidate, self.config_path)
                return False
            if not running:
                os.replace(candidate, self.config_path)
                return False
            await self.runtime.save_state(self.run_dir / config.STATE_FILE)
            os.replace(candidate, self.config_path)
            _files.append_log(self.log_path, f"--- corral {_files.stamp()} {self.name}: reload")
            await self.master.reload(timeout=self._ready_timeout)
            return True

    async def set_servers(self, desired: Mapping[str, Mapping[str, str]]) -> sync.SyncPlan:
        """Take server states to ``desired`` through the runtime API (no reload).

        Returns the plan; ``reload_needed`` says what the runtime API could not do. A
        command HAProxy refuses raises RuntimeApiError (the commands before it took effect).
        """
        observed = {key: s.admin for key, s in (await self.runtime.servers()).items()}
        spec = self._spec_provider()
        writers = [n for n, r in spec.resources.items() if r.galera is not None and r.balance]
        try:
            steps = sync.plan(desired, observed, known=self.backends(), cut=writers)
        except ValueError as exc:
            raise DriverError(f"{self.name}: {exc}") from exc
        for cmd in steps.commands:
            ok = ("New server registered.",) if cmd.startswith("add server") else ()
            if cmd.startswith("del server"):
                ok = ("Server deleted.",)
            await self.runtime.expect(cmd, *ok)
        return steps

    # --- the Driver protocol --------------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            if (await self.status()).state == "running":
                return
            await self._stop()
            candidate = await self.validate(self.render_config())
            os.replace(candidate, self.config_path)
            proc = self._spawn()
            self._owned.started(proc, " ".join(self._argv()))
            await self._wait_ready(proc)

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def status(self) -> DriverStatus:
        return self._owned.status("master pid", lambda code: f"haproxy {describe_exit(code)}")

    async def adopt(self) -> bool:
        return self._owned.adopt()

    async def promote(self) -> None:
        raise DriverError(f"{self.name}: haproxy has no promoted role")

    async def demote(self) -> None:
        raise DriverError(f"{self.name}: haproxy has no promoted role")

    # --- helpers ----------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        master = str(self.run_dir / config.MASTER_SOCKET)
        return [self._haproxy, "-W", "-S", master, "-f", str(self.config_path)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return spawn_service(self._argv(), log_path=self.log_path, name=self.name)

    async def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Until the master lists a worker and the worker's runtime API answers."""
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                last = _files.tail(self.log_path, lines=3)
                raise DriverError(f"{self.name}: haproxy exited with code {code}: {last}")
            try:
                if any(p.kind == "worker" for p in await self.master.processes()):
                    await self.runtime.command("show info")
                    return
            except DriverError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
        await self._stop()
        raise DriverError(f"{self.name}: haproxy not ready within {self._ready_timeout:g}s")

    async def _stop(self) -> None:
        pgid = self._owned.to_stop()
        if pgid is not None:
            await self._terminate(pgid)
        await self._owned.stopped(self._kill_timeout)

    async def _terminate(self, pgid: int) -> None:
        def soft() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pgid, signal.SIGUSR1)  # the master only: it soft-stops its workers

        await stop_group(
            pgid,
            name=self.name,
            log_path=self.log_path,
            soft=soft,
            soft_name="SIGUSR1",
            stop_timeout=self.stop_timeout,
            kill_timeout=self._kill_timeout,
        )


def _alerts(output: str) -> str:
    """HAProxy's ALERT lines (the reasons ``-c`` gives), joined, without the pid prefix."""
    kept = [
        _ALERT_PREFIX.sub("", line).strip() for line in output.splitlines() if "[ALERT]" in line
    ]
    return " | ".join(kept[:5])
