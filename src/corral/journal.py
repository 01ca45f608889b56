"""Logging to journald with structured fields (I/O; nothing of corral is imported).

Under systemd, a service's stderr goes to the journal as plain lines: the node or resource a
line is about would be text only. :class:`JournalHandler` speaks journald's native protocol
instead (datagrams on ``/run/systemd/journal/socket``), so every line carries fields that
``journalctl`` can select on: ``CORRAL_NODE``, ``CORRAL_RESOURCE`` (when the log call passed
``extra={"resource": name}``), ``CORRAL_CLUSTER``, ``LOGGER``, the code location, and
``SYSLOG_IDENTIFIER=corral``. For example ``journalctl -u corral CORRAL_RESOURCE=api``.

Protocol: one datagram per entry; each field ``NAME=value\\n``, or, for a value with a
newline, ``NAME\\n`` + its length as 64-bit little-endian + value + ``\\n``. An entry too
large for a datagram goes in a sealed memfd passed with ``SCM_RIGHTS``.

:func:`stderr_is_journal` says whether to use it: systemd sets ``JOURNAL_STREAM`` to the
``device:inode`` of the stream it connected to stderr, and a match means our stderr is the
journal (not a terminal, a file, or a pipe a test set up). A handler that cannot send falls
back to writing the line on stderr: a log line is never lost silently and never raises.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "corral"
# logging levels -> syslog priorities (journald's PRIORITY field)
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


def stderr_is_journal(environ: Mapping[str, str] | None = None) -> bool:
    stream = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def encode_field(name: str, value: str) -> bytes:
    data = value.encode(errors="replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    return next((p for level, p in sorted(PRIORITY.items(), reverse=True) if levelno >= level), 7)


class JournalHandler(logging.Handler):
    """``fields``: added to every entry (``CORRAL_NODE``, ``CORRAL_CLUSTER``)."""

    def __init__(self, fields: Mapping[str, str], path: str = SOCKET) -> None:
        super().__init__()
        self.fields, self.path = dict(fields), path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def entry(self, record: logging.LogRecord) -> bytes:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(priority(record.levelno)),
            "SYSLOG_IDENTIFIER": IDENTIFIER,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            **self.fields,
        }
        resource = getattr(record, "resource", None)
        if resource:
            fields["CORRAL_RESOURCE"] = str(resource)
        return b"".join(encode_field(k, v) for k, v in fields.items())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.entry(record)
            try:
                self._sock.sendto(data, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(data)
        except Exception:  # the journal is gone: the line goes to stderr, never lost silently
            sys.stderr.write(f"{record.name} {record.getMessage()}\n")

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("corral-log", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)  # journald takes only a sealed memfd
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            self._sock.sendmsg([], rights, 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
        super().close()


def log_to_journal_if_stderr_is(fields: Mapping[str, str], level: int) -> bool:
    """Replace the root logger's handlers with a :class:`JournalHandler` when stderr is the
    journal (:func:`stderr_is_journal`); True when it did."""
    if not stderr_is_journal() or not os.path.exists(SOCKET):
        return False
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = JournalHandler(fields)
    handler.setLevel(level)
    root.addHandler(handler)
    return True
