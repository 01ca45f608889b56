"""One node's MariaDB Galera server: every piece of I/O around ``mariadbd`` (shell).

The decisions (who bootstraps, who waits) are pure and live in :mod:`corral.core.galera`; this
class only does what it is told and reports what it finds. Contract:

- :meth:`GaleraServer.initialize` makes a fresh datadir (``mariadb-install-db``); a datadir
  that already holds a database is left alone.
- :meth:`GaleraServer.inspect` reports the node's state (:class:`NodeState`) from its files.
  Only when grastate.dat says ``seqno: -1`` and mariadbd is not running does it run
  ``mariadbd --wsrep-recover`` to read the last committed position from InnoDB.
- :meth:`GaleraServer.start` runs mariadbd (``--wsrep-new-cluster`` when told to bootstrap,
  ``--wsrep-start-position`` when a recovered position is given) and returns once it accepts
  SQL on its socket. A server that exits, or does not answer within ``start_timeout``, is
  stopped and the start raises :class:`DriverError` with the server's own ``[ERROR]`` lines.
- :meth:`GaleraServer.stop` sends SIGTERM and waits ``stop_timeout`` (mariadbd may ignore
  SIGTERM for 15 s or more while it waits for a primary component), then SIGKILLs the process
  group. Stopping a stopped server succeeds.
- :meth:`GaleraServer.status` reads ``wsrep_*`` status over one client connection kept open
  between checks (PyMySQL, in a worker thread, bounded by ``query_timeout``); it never raises
  for a server that is down or not answering: it reports that.
- Secrets (the SST and check users' passwords) are references, resolved at the moment of use:
  at each start (written into the 0600 my.cnf, which the SST helper reads) and in
  :meth:`GaleraServer.ensure_users`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from corral.core.galera.evs import clear_option, evict_option
from corral.core.galera.files import (
    GaleraFileError,
    marked_safe_to_bootstrap,
    node_state,
    parse_recovered,
)
from corral.core.galera.state import NodeState, Position
from corral.drivers import _files
from corral.drivers._exec import CommandTimeout, run_command
from corral.drivers._group import spawn_service, stop_group
from corral.drivers._owned import OwnedInstance
from corral.drivers.base import DriverError
from corral.drivers.galera_conf import GaleraSettings, render_config
from corral.drivers.secrets import resolve
from corral.fileio import private_dir, write_atomic

_STATUS_VARS = (
    "wsrep_local_state",
    "wsrep_local_state_comment",
    "wsrep_cluster_status",
    "wsrep_ready",
    "wsrep_cluster_size",
    "wsrep_last_committed",
    "wsrep_cluster_state_uuid",
)
SYNCED = 4  # wsrep_local_state: 1 joining, 2 donor/desynced, 3 joined, 4 synced


@dataclass(frozen=True)
class GaleraStatus:
    """What the server says about itself. ``running``: the process lives. ``answering``: it
    took SQL (else ``detail`` says why not). ``healthy`` is what a client may rely on: synced,
    in the primary component, ready (a donor or a non-primary node is not)."""

    running: bool
    answering: bool = False
    local_state: int | None = None
    state_comment: str = ""
    cluster_status: str = ""
    ready: bool = False
    cluster_size: int = 0
    position: Position | None = None
    detail: str = ""

    @property
    def synced(self) -> bool:
        return self.local_state == SYNCED

    @property
    def primary(self) -> bool:
        return self.cluster_status == "Primary"

    @property
    def healthy(self) -> bool:
        return self.synced and self.primary and self.ready


def _error_lines(text: str, limit: int = 3) -> str:
    """The server's own reasons in a log excerpt: its first ``[ERROR]`` lines (the cause comes
    first; what follows is the abort it led to), else the last lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [re.sub(r"^.*?\[ERROR\]\s*", "", line) for line in lines if "[ERROR]" in line]
    errors = [e for e in errors if e != "Aborting"]
    return " | ".join(errors[:limit] if errors else lines[-limit:])


class GaleraServer:
    """mariadbd of one Galera node (see the module contract)."""

    def __init__(
        self,
        settings: GaleraSettings,
        *,
        start_timeout: float = 600.0,
        stop_timeout: float = 60.0,
        kill_timeout: float = 10.0,
        recover_timeout: float = 300.0,
        query_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.kill_timeout = kill_timeout
        self.recover_timeout = recover_timeout
        self.query_timeout = query_timeout
        s = settings
        self._owned = OwnedInstance(s.run_dir / "corral-mariadbd.pid", s.log_path)
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._sql_lock = asyncio.Lock()  # one query at a time on the kept connection
        self._lock = asyncio.Lock()  # no start during a stop, no recover during a start

    @property
    def name(self) -> str:
        return f"galera {self.settings.node}"

    @property
    def node(self) -> str:
        return self.settings.node

    # --- files ------------------------------------------------------------------------------

    def _argv(self, *extra: str) -> list[str]:
        s = self.settings
        argv = [s.mariadbd, f"--defaults-file={s.config_path}", f"--user={s.run_as}", *extra]
        if s.netns is not None:
            argv = ["ip", "netns", "exec", s.netns, *argv]
        return argv

    async def write_config(self) -> None:
        """Resolve the SST password (if any) and write my.cnf, 0600."""
        s = self.settings
        auth = None
        if s.sst_password is not None:
            password = await resolve(s.sst_password, f"{self.name}: sst_password")
            auth = f"{s.sst_user}:{password}"
        for directory in (s.base_dir, s.run_dir, s.tmp_dir):
            private_dir(directory)
        write_atomic(s.config_path, render_config(s, auth))
        if not s.log_path.exists():
            write_atomic(s.log_path, "")
        self._hand_over(s.base_dir, s.run_dir, s.tmp_dir, s.config_path, s.log_path)

    def _hand_over(self, *paths: Path) -> None:
        """Give ``paths`` to the OS user mariadbd runs as: it writes its socket, tmp files and
        log there, and its SST helper reads my.cnf (0600 still: root and that user alone)."""
        if self.settings.run_as == "root":
            return
        try:
            user = pwd.getpwnam(self.settings.run_as)
        except KeyError:
            raise DriverError(f"{self.name}: no OS user {self.settings.run_as!r}") from None
        for parent in paths[0].parents:  # mariadbd (not root) must reach its base dir
            info = parent.stat()
            if not (
                info.st_mode & 0o001
                or (info.st_uid == user.pw_uid and info.st_mode & 0o100)
                or (info.st_gid == user.pw_gid and info.st_mode & 0o010)
            ):
                raise DriverError(
                    f"{self.name}: mariadbd runs as {user.pw_name}, which cannot enter {parent} "
                    f"(mode {info.st_mode & 0o7777:04o}): put the Galera base dir elsewhere"
                )
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)

    def initialized(self) -> bool:
        """The datadir holds a database (its ``mysql`` system schema)."""
        return (self.settings.datadir / "mysql").is_dir()

    async def initialize(self) -> bool:
        """Make a fresh datadir with ``mariadb-install-db``; False (and nothing done) when one
        is there already. DriverError with the tool's reason when it fails."""
        s = self.settings
        if self.initialized():
            return False
        await self.write_config()
        if s.datadir.exists() and any(s.datadir.iterdir()):
            raise DriverError(
                f"{self.name}: {s.datadir} is not empty but holds no database (no mysql/): "
                "refusing to initialize over it"
            )
        argv = [
            s.install_db,
            f"--defaults-file={s.config_path}",
            f"--user={s.run_as}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        offset = s.log_path.stat().st_size
        try:
            done = await run_command(argv, timeout=self.recover_timeout, cwd="/")
        except CommandTimeout as exc:
            raise DriverError(f"{self.name}: mariadb-install-db: {exc}") from None
        if done.returncode != 0:
            said = done.stderr + done.stdout + self._log_since(offset)
            raise DriverError(
                f"{self.name}: mariadb-install-db exited {done.returncode}: {_error_lines(said)}"
            )
        return True

    def _read(self, name: str) -> str | None:
        try:
            return (self.settings.datadir / name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DriverError(f"{self.name}: cannot read {name}: {exc.strerror}") from None

    async def inspect(self) -> NodeState:
        """This node's report (see the module contract); DriverError for a datadir that cannot
        be read or files that cannot be parsed (naming the file and line)."""
        async with self._lock:
            running = self.running()
            grastate, gvwstate = self._read("grastate.dat"), self._read("gvwstate.dat")
            try:
                state = node_state(
                    self.settings.node, grastate=grastate, gvwstate=gvwstate, running=running
                )
            except GaleraFileError as exc:
                raise DriverError(f"{self.name}: {self.settings.datadir}/{exc}") from None
            g = state.grastate
            if running or g is None or g.position.seqno != -1 or not self.initialized():
                return state
            recovered = await self._recover()
            return NodeState(state.node, g, recovered, state.view, running)

    async def _recover(self) -> Position:
        """``mariadbd --wsrep-recover``: the last committed position InnoDB holds."""
        s = self.settings
        await self.write_config()
        with contextlib.suppress(FileNotFoundError):
            s.recover_log.unlink()
        argv = self._argv("--wsrep-recover", f"--log-error={s.recover_log}")
        try:
            done = await run_command(argv, timeout=self.recover_timeout, cwd="/")
        except CommandTimeout as exc:
            raise DriverError(f"{self.name}: --wsrep-recover: {exc}") from None
        try:
            log = s.recover_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            log = done.stderr
        try:
            return parse_recovered(log, str(s.recover_log))
        except GaleraFileError as exc:
            raise DriverError(
                f"{self.name}: --wsrep-recover exited {done.returncode} without a position: "
                f"{_error_lines(log + done.stderr)} ({exc.problem})"
            ) from None

    async def allow_bootstrap(self) -> None:
        """Write ``safe_to_bootstrap: 1`` into grastate.dat (owner and mode kept): after a
        crash Galera refuses ``--wsrep-new-cluster`` on a node whose file says 0, which every
        node's does after a full crash. Only for the node chosen to bootstrap, whose caller
        holds the bootstrap claim (safety rule 6). DriverError when mariadbd runs or the node
        has no (valid) grastate.dat."""
        async with self._lock:
            if self.running():
                raise DriverError(f"{self.name}: mariadbd runs: grastate.dat is its own now")
            path = self.settings.datadir / "grastate.dat"
            text = self._read("grastate.dat")
            if text is None:
                raise DriverError(f"{self.name}: no {path}: nothing to bootstrap from")
            try:
                marked = marked_safe_to_bootstrap(text, str(path))
            except GaleraFileError as exc:
                raise DriverError(f"{self.name}: {exc}") from None
            _replace_keeping_owner(path, marked)
            _files.append_log(
                self.settings.log_path,
                f"--- corral {_files.stamp()} {self.name}: grastate.dat: safe_to_bootstrap: 1",
            )

    # --- the process ------------------------------------------------------------------------

    def running(self) -> bool:
        """mariadbd of this node runs (our child, or one a previous agent started)."""
        return self._owned.adopt()

    async def start(self, *, bootstrap: bool = False, position: Position | None = None) -> None:
        """Start mariadbd (see the module contract). ``bootstrap``: form a new primary
        component from this node alone; the caller must hold the cluster's bootstrap claim
        (safety rule 6: two nodes bootstrapping make two clusters that never merge).
        ``position``: the recovered position to start from (without it a crashed node comes
        back with its history reset, and every joiner then needs a full SST). A node restarted
        after a full crash waits here until ``pc.recovery`` re-forms the primary component with
        the other members of its saved view: start them together."""
        async with self._lock:
            if self.running():
                raise DriverError(f"{self.name}: mariadbd already runs")
            if not self.initialized():
                raise DriverError(
                    f"{self.name}: {self.settings.datadir} holds no database; initialize first"
                )
            await self.write_config()
            extra = ["--wsrep-new-cluster"] if bootstrap else []
            if position is not None:
                extra.append(f"--wsrep-start-position={position.uuid}:{position.seqno}")
            proc, offset = self._spawn(extra)
            try:
                await self._wait_answering(proc, offset)
            except BaseException:
                await self._stop()
                raise

    def _spawn(self, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
        argv = self._argv(*extra)
        log_path = self.settings.log_path
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc = spawn_service(argv, log_path=log_path, name=self.name)
        self._owned.started(proc, " ".join(argv))
        return proc, offset

    def _log_since(self, offset: int) -> str:
        with self.settings.log_path.open("rb") as f:
            f.seek(offset)
            return f.read(256 * 1024).decode(errors="replace")

    async def _wait_answering(self, proc: subprocess.Popen[bytes], offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise DriverError(
                    f"{self.name}: mariadbd exited with code {code}: "
                    f"{_error_lines(self._log_since(offset))}"
                )
            if self.settings.socket.exists():
                with contextlib.suppress(DriverError):
                    await self._query("SELECT 1")
                    return
            if time.monotonic() > deadline:
                raise DriverError(
                    f"{self.name}: mariadbd took no SQL within {self.start_timeout:g}s: "
                    f"{_error_lines(self._log_since(offset))}"
                )
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; a stopped server is fine."""
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        await self._close()
        pgid = self._owned.to_stop()
        if pgid is not None:

            def soft() -> None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGTERM)

            await stop_group(
                pgid,
                name=self.name,
                log_path=self.settings.log_path,
                soft=soft,
                soft_name="SIGTERM",
                stop_timeout=self.stop_timeout,
                kill_timeout=self.kill_timeout,
            )
        await self._owned.stopped(self.kill_timeout)

    # --- SQL --------------------------------------------------------------------------------

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            unix_socket=str(self.settings.socket),
            user="root",  # unix_socket authentication: the agent is root on its node
            connect_timeout=self.query_timeout,
            read_timeout=self.query_timeout,
            write_timeout=self.query_timeout,
            autocommit=True,
        )

    def _run(self, sql: str, args: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        """In a worker thread: ``sql`` on the kept connection (made on first use)."""
        if self._conn is None:
            self._conn = self._connect()
        with self._conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    async def _query(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Rows of ``sql``; DriverError (and the connection dropped) when it fails."""
        async with self._sql_lock:
            try:
                return await asyncio.to_thread(self._run, sql, args)
            except (pymysql.MySQLError, OSError) as exc:
                await self._close_locked()
                raise DriverError(f"{self.name}: {_describe_sql_error(exc)}") from None

    async def _close(self) -> None:
        async with self._sql_lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.close)

    async def status(self) -> GaleraStatus:
        """What the server says (see :class:`GaleraStatus`); never raises."""
        if not self.running():
            return GaleraStatus(running=False, detail="mariadbd is not running")
        names = ", ".join(f"'{n}'" for n in _STATUS_VARS)
        try:
            rows = await self._query(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
        except DriverError as exc:
            return GaleraStatus(running=True, detail=str(exc))
        values = {str(k).lower(): str(v) for k, v in rows}
        return _status_from(values)

    async def ensure_users(self) -> None:
        """Create (or set the passwords of) the SST and check users, with the grants they
        need. Run it on a primary node: Galera replicates it to every other."""
        s = self.settings
        statements: list[tuple[str, tuple[Any, ...] | None]] = []
        for user, host, ref, grants in (
            (
                s.sst_user,
                "localhost",
                s.sst_password,
                "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR",
            ),
            (s.check_user, "%", s.check_password, "USAGE"),
        ):
            if ref is None:
                continue
            password = await resolve(ref, f"{self.name}: password of {user}")
            account = f"'{user}'@'{host}'"
            escaped = account.replace("%", "%%")  # PyMySQL formats a statement with arguments
            statements += [
                (f"CREATE USER IF NOT EXISTS {escaped} IDENTIFIED BY %s", (password,)),
                (f"ALTER USER {escaped} IDENTIFIED BY %s", (password,)),
                (f"GRANT {grants} ON *.* TO {account}", None),
            ]
        for sql, args in statements:
            await self._query(sql, args)

    async def view(self) -> list[tuple[str, str]]:
        """``(gcomm uuid, node name)`` of every member of this server's view."""
        rows = await self._query("SELECT node_uuid, node_name FROM mysql.wsrep_cluster_members")
        return [(str(u), str(n)) for u, n in rows]

    async def evict(self, member_uuid: str) -> None:
        """Drop member ``member_uuid`` from the group at once (``evs.evict``; Galera spreads
        it to every member and keeps that uuid out for good: a restarted server has a new
        one). The caller's rule 2: only a member whose node was fenced."""
        await self._query("SET GLOBAL wsrep_provider_options = %s", (evict_option(member_uuid),))

    async def clear_evictions(self) -> None:
        """Empty this member's evict list (``evs.evict=``): the caller's rule 2, only once
        every node it evicted registered again (:func:`corral.core.galera.evs.evictions_over`)."""
        await self._query("SET GLOBAL wsrep_provider_options = %s", (clear_option(),))

    async def evict_list(self) -> list[str]:
        """The uuids this member keeps evicted (``wsrep_evs_evict_list``, comma-separated)."""
        rows = await self._query("SHOW STATUS LIKE 'wsrep_evs_evict_list'")
        said = str(rows[0][1]) if rows else ""
        return [u.strip() for u in said.split(",") if u.strip()]

    async def execute(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as root over the kept connection (setup and tests)."""
        return await self._query(sql, args)

    async def pid(self) -> int | None:
        """The pid of the running mariadbd (None when it does not run)."""
        record = self._owned.record or self._owned.read_record()
        return record.pid if record is not None and self.running() else None


def _replace_keeping_owner(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically, with the old file's owner and mode (mariadbd
    runs as ``mysql`` and must go on writing it)."""
    old = path.stat()
    tmp = path.with_name(f".{path.name}.corral.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fchown(fd, old.st_uid, old.st_gid)
        os.fchmod(fd, old.st_mode & 0o7777)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _describe_sql_error(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) >= 2:
        return f"SQL error {exc.args[0]}: {exc.args[1]}"
    return f"SQL connection failed: {exc}"


def _status_from(values: dict[str, str]) -> GaleraStatus:
    state = values.get("wsrep_local_state", "")
    size = values.get("wsrep_cluster_size", "")
    uuid, seqno = values.get("wsrep_cluster_state_uuid", ""), values.get("wsrep_last_committed")
    position = None
    if uuid and seqno is not None and re.fullmatch(r"-?\d+", seqno):
        position = Position(uuid, int(seqno))
    return GaleraStatus(
        running=True,
        answering=True,
        local_state=int(state) if state.isdigit() else None,
        state_comment=values.get("wsrep_local_state_comment", ""),
        cluster_status=values.get("wsrep_cluster_status", ""),
        ready=values.get("wsrep_ready", "").upper() == "ON",
        cluster_size=int(size) if size.isdigit() else 0,
        position=position,
    )
