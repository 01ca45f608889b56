"""The real-server tests need root (namespaces) and the packages of ``make server-packages``;
``make test`` installs them, so a missing server is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.drivers.galera_conf import INSTALL_DB, MARIADBD, PROVIDER

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def galera_installed() -> None:
    missing = [p for p in (MARIADBD, INSTALL_DB, PROVIDER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make server-packages` (make test does)")
