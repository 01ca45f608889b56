"""corral's own process supervisor: one command per resource, in a session of its own.

Contract (in addition to :mod:`corral.drivers.base`):

- **How the command runs.** The rendered command (``{node.*}`` filled in by
  :meth:`NodeContext.render`) runs as ``/bin/sh -c <command>``, so operators can use
  redirections, ``$VARS`` and ``&&`` as in a Pacemaker ``anything`` resource. The unit corral
  manages is the *process group* of that shell, not one pid: the shell is the group's leader
  and its pid is the one recorded. Debian's ``sh`` (dash) does not ``exec`` the last command, so
  write ``exec mydaemon --flag`` to make the daemon the leader itself. A command that
  daemonizes (forks into a new session) escapes supervision, as under systemd ``Type=simple``.
- **Environment.** Not the agent's: ``PATH``, ``LANG``, ``LC_ALL`` and ``TZ`` are inherited;
  ``HOME``, ``USER``, ``LOGNAME`` name the user the command runs as; ``CORRAL_RESOURCE`` and
  ``CORRAL_NODE`` name the instance; then the spec's ``env`` (values rendered; a secret
  reference is resolved at each start, and masked in the log tail a failed start reports). ``cwd``
  defaults to ``/``. ``user`` (needs a root agent) also sets the user's groups.
- **Files.** stdout and stderr are appended to ``<state_dir>/logs/<name>.log``, with a line from
  corral before each start and at each stop signal. ``<state_dir>/run/<name>.pid`` holds a
  JSON record: pid, start time (``/proc/<pid>/stat`` field 22), boot id, wall-clock start and
  command. It is written after the start and removed when corral sees the instance end.
- **start()** is a no-op when the instance already runs. A command that exits non-zero within
  ``settle`` seconds makes ``start()`` raise with its exit code and the log's last lines (a
  typo'd command fails at once, not at the next status). Exiting 0 at once is not an error.
- **stop()** sends SIGTERM then SIGCONT (so a SIGSTOPped process can act on the SIGTERM) to the
  whole group, waits up to the spec's ``stop_timeout`` for every member to end, then SIGKILLs
  the group and waits up to ``kill_timeout``; members still alive then raise DriverError.
  Stopping a stopped instance succeeds. Afterwards ``status()`` is ``stopped``.
- **status()**: ``running`` while the leader lives (a SIGSTOPped leader is running: hangs are
  for health checks). When corral's own child ended: ``stopped`` after exit 0 or a stop by
  corral, else ``failed`` with the exit code or signal in ``detail``. For an adopted process
  (started by a previous agent) only ``/proc`` is known: it is running while a process with
  the recorded pid *and* start time lives; when it is gone, ``failed`` with an unknown code.
  A pid file from an earlier boot means ``stopped``.
- **adopt()** returns True when the pid file names a live process of ours (same boot, pid,
  start time, and that process leads its own session), never a recycled pid.

Restart with backoff is the agent's job; the driver exposes ``exit_code``, ``pid`` and
``started_at`` for it.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from corral.drivers import _files
from corral.drivers._group import poll_exit, signal_group, stop_group
from corral.drivers._owned import OwnedInstance
from corral.drivers.base import DriverError, DriverStatus, NodeContext
from corral.drivers.secrets import redact, resolve
from corral.priority import service_argv
from corral.spec.model import ProcessDriver as ProcessSpec
from corral.spec.secrets import SecretRef

SHELL = "/bin/sh"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def describe_exit(returncode: int) -> str:
    """A person's reading of an exit status (negative: killed by that signal)."""
    if returncode < 0:
        return f"killed by signal {_signame(-returncode)}"
    if 128 < returncode < 128 + signal.NSIG:
        # The shell leader reports a child killed by signal N as 128 + N.
        return f"exited with code {returncode} (the shell's code for {_signame(returncode - 128)})"
    return f"exited with code {returncode}"


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class ProcessSupervisor:
    """Driver for ``process:`` resources (see the module docstring for the contract).

    The child is a plain :class:`subprocess.Popen`, not an asyncio subprocess: asyncio kills a
    child whose transport is closed or collected, so an agent that exits cleanly would take
    its services down with it and a restarted agent would have nothing to adopt. A Popen child
    outlives the agent; its exit status is collected by non-blocking ``poll()`` calls.
    """

    def __init__(
        self,
        name: str,
        spec: ProcessSpec,
        node: NodeContext,
        *,
        settle: float = 0.2,
        kill_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.command = node.render(spec.command)
        self.log_path = _files.log_path(node, name)
        self.pid_path = _files.pid_path(node, name)
        self.stop_timeout = spec.stop_timeout
        self._spec = spec
        self._node = node
        self._settle = settle
        self._kill_timeout = kill_timeout
        self._owned = OwnedInstance(self.pid_path, self.log_path)

    # --- what the agent may read ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The leader's pid of the current (or last child) instance, None when unknown."""
        owned = self._owned
        if owned.record is not None:
            return owned.record.pid
        return None if owned.proc is None else owned.proc.pid

    @property
    def exit_code(self) -> int | None:
        """Exit status of our last child (negative: signal); None while running or adopted."""
        return None if self._owned.proc is None else self._owned.proc.poll()

    @property
    def started_at(self) -> float | None:
        """Wall-clock start of the instance we own, None when there is none."""
        record = self._owned.record
        return None if record is None else record.started_at

    # --- the Driver protocol --------------------------------------------------------------

    async def start(self) -> None:
        if (await self.status()).state == "running":
            return
        await self.stop()  # forget a dead instance, end members it left behind
        secrets = {  # read now, at each start: a rotated secret needs only a restart
            key: await resolve(ref, f"{self.name}: env {key}", self._node.render)
            for key, ref in self._spec.env.items()
            if isinstance(ref, SecretRef)
        }
        proc = self._spawn(secrets)
        self._owned.started(proc, self.command)
        await self._check_settled(proc, secrets.values())

    async def stop(self) -> None:
        pgid = self._owned.to_stop()
        if pgid is not None:
            await self._terminate(pgid)
        await self._owned.stopped(self._kill_timeout)

    async def status(self) -> DriverStatus:
        return self._owned.status("pid", describe_exit)

    async def adopt(self) -> bool:
        return self._owned.adopt()

    async def promote(self) -> None:
        raise DriverError(f"{self.name}: a process resource has no promoted role")

    async def demote(self) -> None:
        raise DriverError(f"{self.name}: a process resource has no promoted role")

    # --- helpers ----------------------------------------------------------------------------

    def _environment(self, secrets: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        """The command's environment, and the Popen user/group arguments (empty: as us)."""
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        ids: dict[str, Any] = {}
        user = self._spec.user
        try:
            pw = pwd.getpwnam(user) if user is not None else pwd.getpwuid(os.getuid())
        except KeyError:
            if user is not None:
                raise DriverError(f"{self.name}: no such user {user!r}") from None
            pw = None  # we run under a uid without a passwd entry (a container): no HOME
        if pw is not None:
            env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        if pw is not None and user is not None and (os.geteuid() == 0 or pw.pw_uid != os.getuid()):
            # Not root and another user: Popen fails with EPERM, which start() reports.
            groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
            ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}
        env.update(CORRAL_RESOURCE=self.name, CORRAL_NODE=self._node.name)
        spec_env = self._spec.env.items()
        env.update({k: self._node.render(v) for k, v in spec_env if isinstance(v, str)})
        env.update(secrets)
        return env, ids

    def _spawn(self, secrets: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Fork/exec the command (a few ms; synchronous on purpose, see the class note)."""
        env, ids = self._environment(secrets)
        cwd = self._node.render(self._spec.cwd) if self._spec.cwd else "/"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(
                f"--- corral {_files.stamp()} {self.name}: starting: {self.command}\n".encode()
            )
            log.flush()
            try:
                return subprocess.Popen(
                    service_argv([SHELL, "-c", self.command]),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                    **ids,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                what = str(exc)
                if isinstance(exc, OSError) and exc.filename:
                    what = f"{exc.strerror}: {exc.filename}"
                raise DriverError(f"{self.name}: cannot start ({what})") from exc

    async def _check_settled(self, proc: subprocess.Popen[bytes], secrets: Iterable[str]) -> None:
        """Raise when the fresh process exits non-zero within the settle time (the log's
        tail in the message masked of ``secrets``)."""
        returncode = await poll_exit(proc, self._settle)
        # The record stays: a leader that exited may have left members that stop() must end.
        if returncode is not None and returncode != 0:
            last = redact(_files.tail(self.log_path, lines=3), secrets)
            raise DriverError(
                f"{self.name}: {describe_exit(returncode)} right after start"
                + (f": {last}" if last else "")
            )

    async def _terminate(self, pgid: int) -> None:
        """SIGTERM (+SIGCONT) the group, SIGKILL it after the stop timeout; see the contract."""

        def soft() -> None:
            signal_group(pgid, signal.SIGTERM)
            signal_group(pgid, signal.SIGCONT)  # a stopped (hung) process must see the TERM

        await stop_group(
            pgid,
            name=self.name,
            log_path=self.log_path,
            soft=soft,
            soft_name="SIGTERM",
            stop_timeout=self.stop_timeout,
            kill_timeout=self._kill_timeout,
        )
