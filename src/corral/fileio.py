"""File writes that readers never see half done (used by every shell that leaves a file for
another process: pid files, the lease guard's listing, status files), and corral's private
directories.

Everything corral keeps on a node (the agent's state dir with its spec copy, handover and guard
files, the embedded etcd member's data, the lab's node dirs) is root's alone: directories are
made 0700 and files 0600, whatever the process's umask. A spec holds no secret (secrets are
references), but the store's data, the handover and the guard's listing are corral's to change
alone, and a reader could learn the cluster's layout from them.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) as directories only their owner can enter; an
    existing directory is left as it is (:func:`corral.agent.statedir.check_state_dir` judges
    the agent's). Returns ``path``."""
    missing = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # made by another process meanwhile
        os.chmod(directory, PRIVATE_DIR)  # the umask may have taken bits away; never adds
    return path


def write_atomic(path: Path, text: str, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``text`` so that a reader never sees half a file; the file gets
    ``mode`` (default owner-only), its missing directories :func:`private_dir`'s."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with open(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, mode)  # an existing leftover tmp keeps its old mode otherwise
        handle.write(text)
    os.replace(tmp, path)
