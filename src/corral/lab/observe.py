"""What the chaos checker looks at, read straight from the kernel and the files (no corral).

- :class:`AddrSocket`: a netlink socket opened inside a network namespace (a thread enters the
  namespace with ``setns``, opens the socket and exits: a socket stays in the namespace it was
  made in), then asked for the namespace's addresses with one ``RTM_GETADDR`` dump, a few
  tens of microseconds, no fork. Fast enough to look every few milliseconds.
- :func:`pidfile_holder`: the process a ``run/<resource>.pid`` file names, when it lives in the
  node's namespace (a SIGSTOPped process is still a holder: it holds its sockets and files, and
  a SIGCONT makes it serve again; a zombie is not).
- :class:`LogTail`: the lines added to a log since the last read.

Contract: nothing here writes or signals anything; a namespace or a file that is gone reads as
empty.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import threading
from pathlib import Path

from corral.lab import procs

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
RTM_GETADDR = 22
RTM_NEWADDR = 20
NLMSG_DONE = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_DUMP = 0x300
IFA_ADDRESS = 1
IFA_LOCAL = 2
_HDR = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_addresses(data: bytes) -> tuple[set[str], bool]:
    """The addresses in netlink ``RTM_NEWADDR`` messages (pure); True once ``NLMSG_DONE``
    (or an error) ends the dump."""
    found: set[str] = set()
    pos = 0
    while pos + _HDR.size <= len(data):
        length, kind, _, _, _ = _HDR.unpack_from(data, pos)
        if length < _HDR.size:
            return found, True
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return found, True
        if kind == RTM_NEWADDR:
            family = data[pos + _HDR.size]
            attrs: dict[int, bytes] = {}
            apos = pos + _HDR.size + _IFADDR.size
            while apos + _RTA.size <= pos + length:
                alen, atype = _RTA.unpack_from(data, apos)
                if alen < _RTA.size:
                    break
                attrs[atype] = data[apos + _RTA.size : apos + alen]
                apos += _align(alen)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                found.add(socket.inet_ntop(family, raw))
        pos += _align(length)
    return found, False


class AddrSocket:
    """A netlink route socket inside namespace ``ns`` (see the module docstring)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._seq = 0
        made: list[socket.socket | BaseException] = []
        thread = threading.Thread(target=self._open, args=(made,), name=f"netns-{ns}")
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        self.sock = made[0]

    def _open(self, made: list[socket.socket | BaseException]) -> None:
        # setns moves only this thread, which ends right after: the socket keeps the namespace
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {self.ns}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            sock.bind((0, 0))
            sock.settimeout(1.0)
            made.append(sock)
        except BaseException as exc:
            made.append(exc)

    def addresses(self) -> set[str]:
        """Every address configured in the namespace (all interfaces, IPv4 and IPv6)."""
        self._seq += 1
        msg = _HDR.pack(_HDR.size + _IFADDR.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                        self._seq, 0) + _IFADDR.pack(0, 0, 0, 0, 0)  # fmt: skip
        self.sock.send(msg)
        found: set[str] = set()
        while True:
            part, done = parse_addresses(self.sock.recv(65536))
            found |= part
            if done:
                return found

    def close(self) -> None:
        self.sock.close()


def pidfile_holder(state_dir: Path, resource: str, ns_inode: int | None) -> procs.Proc | None:
    """The live process ``<state_dir>/run/<resource>.pid`` names, if it runs in the namespace
    whose inode is ``ns_inode`` and started when the file says (a reused pid is not it)."""
    try:
        record = json.loads((state_dir / "run" / f"{resource}.pid").read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    proc = procs.read_proc(pid)
    if proc is None or not proc.alive:
        return None
    try:
        if ns_inode is not None and os.stat(f"/proc/{pid}/ns/net").st_ino != ns_inode:
            return None
        start = record.get("start_time")
        stat = Path(f"/proc/{pid}/stat").read_text()
        if start is not None and int(stat[stat.rfind(")") + 2 :].split()[19]) != int(start):
            return None
    except (OSError, ValueError, IndexError):
        return None
    return proc


class LogTail:
    """The lines appended to ``path`` since the last :meth:`read` (a file that shrank, as
    after a rotation, is read again from its start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.lines_seen = 0

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < self.pos:
                    self.pos = 0
                f.seek(self.pos)
                data = f.read(size - self.pos)
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1  # only whole lines: the rest is read next time
        self.pos += cut
        lines = data[:cut].decode(errors="replace").splitlines()
        self.lines_seen += len(lines)
        return lines
