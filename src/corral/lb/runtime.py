"""asyncio clients of HAProxy's runtime API (the admin stats socket) and its master CLI.

Facts found on HAProxy 2.6.12 (tested in ``tests/lb``):

- One connection per command. We send ``cmd\\n`` and half-close (``SHUT_WR``); HAProxy answers
  and closes. The master CLI *needs* the half-close: without it the connection stays open in
  interactive mode and the read never ends.
- There is no status code: success is an empty answer (``set server``), ``New server
  registered.`` (``add server``), ``Server deleted.`` (``del server``); anything else is
  HAProxy's error message (``No such server.``, ``Unknown command...``), which
  :class:`RuntimeApiError` carries verbatim.
- Dynamic servers work in 2.6 without ``experimental-mode``: ``add server b/s addr:port
  <keywords>`` registers the server in maintenance with checks disabled, so it must be
  followed by ``enable health`` (when it has a check) and a state change; the backend must use
  a dynamic algorithm (corral renders ``roundrobin``). ``del server`` needs the server in
  maintenance and without connections. Dynamic servers are not in the configuration file, so
  they vanish at the next reload unless the rendered configuration has them too (corral's does:
  it is rendered from the same desired state).
- Reload. The master CLI ``reload`` answers nothing in 2.6 (success reporting came in 2.7);
  ``show proc`` then shows the master's reload counter incremented and a new worker.
  :meth:`MasterCli.reload` uses that pair: one channel to trigger and to verify. We do not
  send SIGUSR2: the master re-executes itself on each reload, and a SIGUSR2 that arrives
  between that ``exec`` and the moment it installs its handlers hits the default action
  (terminate), killing the master; a CLI connection in that window is merely refused or
  queued, and we retry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corral.core.node import DriverError

AdminState = Literal["ready", "drain", "maint"]
ADMIN_STATES: tuple[AdminState, ...] = ("ready", "drain", "maint")
READ_LIMIT = 4 * 1024 * 1024  # bytes of one answer we accept

# srv_admin_state bits (src/server.h): forced / inherited / config maintenance, forced and
# inherited drain, resolution and hostname maintenance.
FMAINT, IMAINT, CMAINT, FDRAIN, IDRAIN, RMAINT, HMAINT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
# srv_op_state values
OP_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


class RuntimeApiError(DriverError):
    """HAProxy refused a command (its own message), or its socket did not answer."""


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state`` (format 1), the fields corral uses."""

    backend: str
    server: str
    server_id: int
    address: str
    port: int
    op_state: int  # 0 stopped, 1 starting, 2 running, 3 stopping
    admin_flags: int

    @property
    def admin(self) -> AdminState:
        """The administrative state corral sets: maint wins over drain."""
        if self.admin_flags & (FMAINT | CMAINT):
            return "maint"
        if self.admin_flags & FDRAIN:
            return "drain"
        return "ready"

    @property
    def operational(self) -> str:
        """``up``, ``down``, ``starting``, ``stopping`` as HAProxy's checks see it."""
        return OP_STATES.get(self.op_state, f"unknown({self.op_state})")


def parse_servers_state(text: str) -> dict[tuple[str, str], ServerState]:
    """Parse ``show servers state``; ValueError on a format other than version 1."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    if lines[0].strip() != "1":
        raise ValueError(f"unknown 'show servers state' format {lines[0]!r}")
    out: dict[tuple[str, str], ServerState] = {}
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        f = line.split()
        if len(f) < 19:
            raise ValueError(f"short 'show servers state' line: {line!r}")
        state = ServerState(
            backend=f[1],
            server=f[3],
            server_id=int(f[2]),
            address=f[4],
            port=int(f[18]),
            op_state=int(f[5]),
            admin_flags=int(f[6]),
        )
        out[(state.backend, state.server)] = state
    return out


def _checked_command(cmd: str) -> str:
    # ';' chains commands and a newline ends one: a name carrying either would smuggle a
    # second command in, so neither may appear in one we send.
    if "\n" in cmd or "\r" in cmd or ";" in cmd:
        raise RuntimeApiError(f"refusing a command with a separator in it: {cmd!r}")
    return cmd


async def _exchange(path: Path, cmd: str, timeout: float) -> str:
    """Send one command on a unix socket, half-close, read the answer to EOF."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=READ_LIMIT)
            writer.write(cmd.encode() + b"\n")
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            data = await reader.read(READ_LIMIT)
            chunks = [data]
            while data:
                data = await reader.read(READ_LIMIT)
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except TimeoutError:
        raise RuntimeApiError(f"{path}: no answer to {cmd!r} within {timeout:g}s") from None
    except OSError as exc:
        raise RuntimeApiError(f"{path}: {exc.strerror or exc}") from exc
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Runtime:
    """The runtime API of one HAProxy worker, over its admin stats socket."""

    def __init__(self, socket_path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = Path(socket_path)
        self.timeout = timeout

    async def command(self, cmd: str) -> str:
        """Run one command and return HAProxy's answer as is (errors are *not* detected:
        the answer text is the only signal and its meaning depends on the command)."""
        return await _exchange(self.path, _checked_command(cmd), self.timeout)

    async def expect(self, cmd: str, *ok: str) -> str:
        """Run ``cmd``; RuntimeApiError with HAProxy's message unless the (stripped) answer is
        one of ``ok`` (the empty string when none is given)."""
        answer = (await self.command(cmd)).strip()
        if answer not in (ok or ("",)):
            raise RuntimeApiError(f"haproxy refused {cmd!r}: {answer or '(no answer)'}")
        return answer

    async def servers(self) -> dict[tuple[str, str], ServerState]:
        """Every server of every backend, keyed by ``(backend, server)``."""
        text = await self.command("show servers state")
        try:
            return parse_servers_state(text)
        except ValueError as exc:
            raise RuntimeApiError(
                f"cannot read 'show servers state': {exc}: {text[:200]!r}"
            ) from None

    async def set_state(self, backend: str, server: str, state: AdminState) -> None:
        """Set a server's administrative state: ``ready``, ``drain`` (no new connections,
        kept ones finish) or ``maint`` (no traffic at all; checks stop)."""
        if state not in ADMIN_STATES:
            raise RuntimeApiError(f"unknown server state {state!r}")
        await self.expect(f"set server {backend}/{server} state {state}")

    async def add_server(self, backend: str, server: str, address: str, params: str) -> None:
        """Register a dynamic server (it starts in maint with checks off, see module doc)."""
        await self.expect(
            f"add server {backend}/{server} {address} {params}", "New server registered."
        )

    async def enable_health(self, backend: str, server: str) -> None:
        await self.expect(f"enable health {backend}/{server}")

    async def del_server(self, backend: str, server: str) -> None:
        """Delete a dynamic or configured server; it must be in maint without connections."""
        await self.expect(f"del server {backend}/{server}", "Server deleted.")

    async def save_state(self, path: Path) -> None:
        """Write ``show servers state`` to ``path`` atomically (before a reload)."""
        text = await self.command("show servers state")
        parse_servers_state(text)  # refuse to save an answer we could not read back
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


@dataclass(frozen=True)
class ProcInfo:
    """One process of ``show proc`` on the master CLI."""

    pid: int
    kind: str  # master, worker
    reloads: int
    failed: int | None  # master only: failed reloads
    old: bool  # a worker left from an earlier generation (2.6: a worker with reloads > 0)


def parse_show_proc(text: str) -> list[ProcInfo]:
    """Parse the master CLI's ``show proc`` (2.6 layout)."""
    out: list[ProcInfo] = []
    section = "current"
    for line in text.splitlines():
        if line.startswith("#"):
            section = "old" if "old" in line else "programs" if "programs" in line else section
            continue
        f = line.split()
        if len(f) < 3 or not f[0].isdigit() or section == "programs":
            continue
        failed = None
        if "[failed:" in line:
            failed = int(line.split("[failed:", 1)[1].split("]", 1)[0])
        kind, reloads = f[1], int(f[2])
        old = section == "old" or (kind == "worker" and reloads > 0)
        out.append(ProcInfo(int(f[0]), kind, reloads, failed, old))
    return out


class MasterCli:
    """The master CLI (``haproxy -W -S <path>``): process list and reload."""

    def __init__(self, socket_path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = Path(socket_path)
        self.timeout = timeout

    async def command(self, cmd: str) -> str:
        return await _exchange(self.path, _checked_command(cmd), self.timeout)

    async def processes(self) -> list[ProcInfo]:
        return parse_show_proc(await self.command("show proc"))

    async def _master(self) -> ProcInfo:
        procs = await self.processes()
        master = next((p for p in procs if p.kind == "master"), None)
        if master is None:
            raise RuntimeApiError(f"{self.path}: 'show proc' lists no master")
        return master

    async def reload(self, timeout: float = 10.0) -> int:
        """Reload and return the new worker's pid once the master reports it.

        RuntimeApiError when the reload failed (the master's failed counter rose) or did not
        show within ``timeout``. The caller validates the configuration first (``haproxy -c``):
        a 2.6 master whose new configuration fails keeps its old workers, but reports nothing.
        """
        before = await self._master()
        workers = {p.pid for p in await self.processes() if p.kind == "worker"}
        await self.command("reload")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            try:
                procs = await self.processes()
            except RuntimeApiError:
                continue  # the master is re-executing: its socket is back in a moment
            master = next((p for p in procs if p.kind == "master"), None)
            if master is None:
                continue
            failed, was = master.failed, before.failed
            if failed is not None and was is not None and failed > was:
                raise RuntimeApiError("haproxy's master reports the reload failed")
            fresh = [p.pid for p in procs if p.kind == "worker" and not p.old]
            new = [pid for pid in fresh if pid not in workers]
            if master.reloads > before.reloads and new:
                return new[0]
        raise RuntimeApiError(f"reload not confirmed by 'show proc' within {timeout:g}s")
