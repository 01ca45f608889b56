"""A real systemd, booted as PID 1 of fresh PID, mount, cgroup, UTS and IPC namespaces.

What it changes and what it must not (the host has its own /tmp, services and kernel knobs):

- Inside a new mount namespace (propagation private) it mounts, before systemd starts:
  ``/`` re-mounted read-only (a *bind* remount: per-mount flag, the host's mount stays rw),
  fresh tmpfs on ``/tmp``, ``/var/tmp`` and ``/run``, ``/sys`` read-only, a cgroup2 hierarchy
  seen from a cgroup namespace rooted at a sub-cgroup made for this instance, a new ``/proc``
  with ``/proc/sys`` read-only (systemd as PID 1 otherwise raises ``fs.file-max``, a global
  knob), and an empty file bind-mounted over ``/dev/console``: PID 1 logs to the console, and
  the host's console is not ours to write to (systemd drops console logs that are no tty).
- systemd boots ``corral-test.target`` (no default dependencies) instead of ``default.target``,
  so no host unit is started and nothing like ``systemd-tmpfiles`` cleans a directory. Its
  only writable places are the tmpfs mounts and its own cgroup subtree.
- If pytest itself is killed, the kernel SIGKILLs that process (``PR_SET_PDEATHSIG``), and the
  rest follows as in close(), except the removal of the (then empty) cgroup directory.
- :meth:`close` SIGKILLs the process it started (``unshare --kill-child`` then SIGKILLs
  systemd, and the kernel kills every process of the PID namespace), waits for it, and removes
  the cgroup subtree. It is safe to call twice and after a failed boot.

Units are written into ``/run/systemd/system`` of the namespace through ``/proc/<pid>/root``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEMD = Path("/lib/systemd/systemd")
PR_SET_PDEATHSIG = 1
BOOT_TIMEOUT = 30.0
TARGET = """\
[Unit]
Description=corral test target
DefaultDependencies=no
"""

# Runs inside the new mount/cgroup/uts/ipc namespaces; $1 is the host's mount-namespace id.
STAGE2 = r"""
set -eu
[ "$(readlink /proc/self/ns/mnt)" != "$1" ] || { echo "not in a new mount namespace" >&2; exit 99; }
mount -o remount,bind,ro /
mount -t tmpfs -o mode=755,size=64m tmpfs /run
# $3: the repository when it lives under /tmp or /var/tmp (a CI clone): kept visible through
# the fresh tmpfs, or the units could not run corral from it
if [ -n "$3" ]; then mkdir /run/corral-repo && mount --bind "$3" /run/corral-repo; fi
mount -t tmpfs -o mode=1777,size=64m tmpfs /tmp
mount -t tmpfs -o mode=1777,size=64m tmpfs /var/tmp
if [ -n "$3" ]; then
  mkdir -p "$3" && mount --bind /run/corral-repo "$3" && umount /run/corral-repo
  rmdir /run/corral-repo
fi
mount -o remount,bind,ro /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
: > /run/console
mount --bind /run/console /dev/console
mkdir -p /run/systemd/system
printf '%s' "$2" > /run/systemd/system/corral-test.target
exec unshare --pid --fork --kill-child=SIGKILL sh -euc '
  mount -t proc -o nosuid,nodev,noexec proc /proc
  mount --bind /proc/sys /proc/sys
  mount -o remount,bind,ro /proc/sys
  exec env -i container=corral-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=corral-test.target --log-target=console
'
"""

STAGE1 = 'echo $$ > "$1/cgroup.procs"; exec unshare --cgroup --mount --propagation private --uts --ipc sh -c "$2" stage2 "$3" "$4" "$5"'


def _repo_under_tmp() -> str:
    """This repository's path when a fresh tmpfs would hide it in the namespace, else ''."""
    repo = str(Path(__file__).resolve().parents[2])
    return repo if repo.startswith(("/tmp/", "/var/tmp/")) else ""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when pytest dies without running close()."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def unavailable_reason() -> str | None:
    """Why a namespaced systemd cannot run here (None: it can)."""
    if not SYSTEMD.exists():
        return f"systemd is not installed ({SYSTEMD} missing; Debian package 'systemd')"
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    for tool in ("unshare", "nsenter", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    return None


def cgroup2_root() -> Path | None:
    """Where the host's cgroup2 hierarchy is mounted (its root), if anywhere."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[0] == "cgroup2" and fields[3] == "/":
            return Path(fields[4])
    return None


class SystemdNamespace:
    """One namespaced systemd (see the module docstring). Use :meth:`boot` and :meth:`close`."""

    def __init__(self, workdir: Path, netns: str | None = None) -> None:
        self.workdir = workdir
        self.netns = netns  # a named network namespace (``ip netns``) to boot in, or the host's
        root = cgroup2_root()
        if root is None:
            raise RuntimeError("no cgroup2 hierarchy is mounted")
        self.cgroup = root / f"corral-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0  # systemd's pid as the host sees it

    @property
    def systemctl(self) -> tuple[str, ...]:
        return ("nsenter", "-t", str(self.pid), "-m", "-p", "systemctl")

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.pid}/root")

    def boot(self) -> None:
        self.cgroup.mkdir()
        host_mnt = os.readlink("/proc/self/ns/mnt")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "systemd-ns.log").open("wb") as log:
            argv = ["sh", "-ec", STAGE1, "stage1", str(self.cgroup), STAGE2, host_mnt, TARGET]
            if self.netns:
                argv = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
            self.proc = subprocess.Popen(
                [*argv, _repo_under_tmp()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            self.pid = self._wait_for_systemd_pid()
            self._wait_until_running()
        except BaseException:
            self.close()
            raise

    def _wait_for_systemd_pid(self) -> int:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + BOOT_TIMEOUT
        for _ in range(int(BOOT_TIMEOUT / 0.05)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"namespace setup exited {self.proc.returncode}: {self._log()}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"systemd did not appear: {self._log()}")

    def _wait_until_running(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = ""
        for _ in range(int(BOOT_TIMEOUT / 0.1)):
            res = self.run("is-system-running", check=False)
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise RuntimeError(f"systemd is {state or 'unreachable'}: {self._log()}")

    def _log(self) -> str:
        return (self.workdir / "systemd-ns.log").read_text(errors="replace")[-2000:]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``systemctl <args>`` inside the namespace."""
        return subprocess.run(
            [*self.systemctl, *args], capture_output=True, text=True, timeout=30, check=check
        )

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        """A shell command inside the namespace (its pids, its /run)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )

    def write_unit(self, name: str, text: str) -> None:
        """Install a runtime unit and make systemd read it."""
        (self.root / "run/systemd/system" / name).write_text(text)
        self.run("daemon-reload")

    def close(self) -> None:
        """Kill what boot() started, wait for it, remove the cgroup subtree (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid and self._is_our_systemd(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            os.kill(self.proc.pid, signal.SIGKILL)  # --kill-child takes systemd with it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        self._remove_cgroup()

    def _is_our_systemd(self, pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        assert self.proc is not None
        return int(stat[stat.rindex(")") + 2 :].split()[1]) == self.proc.pid  # its parent

    def _remove_cgroup(self) -> None:
        if not self.cgroup.exists():
            return
        deadline = time.monotonic() + 15
        for _ in range(300):
            dirs = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), reverse=True)
            try:
                for d in [*dirs, self.cgroup]:
                    d.rmdir()  # deepest first; EBUSY while a killed process is exiting
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@contextlib.contextmanager
def booted(workdir: Path, netns: str | None = None) -> Iterator[SystemdNamespace]:
    """A booted namespace for a fixture (in the network namespace ``netns`` if given), closed
    afterwards (the test is skipped where none can run: :func:`unavailable_reason`)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    sd = SystemdNamespace(workdir, netns)
    sd.boot()
    try:
        yield sd
    finally:
        sd.close()
