"""The agent's state dir is root's alone: judged once at agent start (shell).

What the state dir holds decides what the node does: ``spec.yaml`` is what the lease guard
stops services from, ``handover.json`` lets the next agent inherit the node lease, ``run/``
names the processes the agent adopts, ``etcd/`` is the store member's data. Hence
:func:`check_state_dir`:

- **refused** (:class:`UnsafeStateDir`) when another user owns it, or group or others may
  *write* it: someone else may have planted a handover or a spec copy, and nothing in it can
  be trusted; the operator must look before corral runs there (the message says what to do).
- **tightened, with a warning** when group or others may only *read* or enter it (an install
  made 0755 by an older corral, or by ``mkdir``): nothing can have been planted, so refusing
  would only stop a cluster at upgrade; the agent sets 0700 and says so. Files inside need no
  change: nobody else can reach them through a 0700 directory.
- a missing state dir is made 0700 (:func:`corral.fileio.private_dir`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from corral.fileio import PRIVATE_DIR, private_dir


class UnsafeStateDir(Exception):
    """The state dir may have been written by someone else; the agent does not start."""


def check_state_dir(path: Path) -> str | None:
    """Make or judge ``path`` (see the module doc); return a warning when it was tightened,
    raise :class:`UnsafeStateDir` when it is refused."""
    private_dir(path)
    info = os.stat(path)
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir(f"state dir {path} is not a directory")
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafeStateDir(
            f"state dir {path} is owned by uid {info.st_uid}, not root: its files cannot be "
            f"trusted; check them, then chown -R root:root {path} && chmod 700 {path}"
        )
    if mode & 0o022:
        raise UnsafeStateDir(
            f"state dir {path} has mode {mode:04o}: group or others may write it, so its "
            f"handover and spec copy cannot be trusted; check them, then chmod 700 {path}"
        )
    if mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
        return f"state dir {path} had mode {mode:04o} (others could read it): set to 0700"
    return None
