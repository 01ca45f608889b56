"""What ``make server-packages`` leaves on the host: MariaDB installed, its units masked, no
host MariaDB running (every mariadbd on the machine is one that corral configured), and a
second run that does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.galera.conftest import NEEDS_ROOT

REPO = Path(__file__).resolve().parents[2]
UNITS = ("mariadb.service", "mysql.service", "mysqld.service")
pytestmark = [NEEDS_ROOT, pytest.mark.galera, pytest.mark.usefixtures("galera_installed")]


def test_the_packaged_units_are_masked() -> None:
    for unit in UNITS:
        path = Path("/etc/systemd/system") / unit
        assert path.is_symlink() and os.readlink(path) == "/dev/null", f"{unit} is not masked"
    if Path("/run/systemd/system").is_dir():  # a host where systemd runs: ask it too
        for unit in UNITS:
            state = subprocess.run(
                ["systemctl", "is-enabled", unit], capture_output=True, text=True, check=False
            ).stdout.strip()
            active = subprocess.run(
                ["systemctl", "is-active", unit], capture_output=True, text=True, check=False
            ).stdout.strip()
            assert (state, active) == ("masked", "inactive"), unit


def _mariadbd_processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if argv and argv[0] and Path(argv[0].decode(errors="replace")).name == "mariadbd":
            found[int(entry.name)] = [a.decode(errors="replace") for a in argv if a]
    return found


def test_no_host_mariadb_runs() -> None:
    """A mariadbd of ours runs with --defaults-file naming a my.cnf corral wrote; the host's
    service would read /etc/mysql. (Other tests' servers may run at the same time.)"""
    for pid, argv in _mariadbd_processes().items():
        config = [a.split("=", 1)[1] for a in argv if a.startswith("--defaults-file=")]
        assert config, f"pid {pid} runs mariadbd without a corral config: {argv}"
        with open(config[0]) as f:
            assert f.readline().startswith("# written by corral"), f"pid {pid}: {argv}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_second_install_does_nothing() -> None:
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "server-packages"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stdout + done.stderr
