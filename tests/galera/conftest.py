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


def real_server_marks(timeout: float) -> list[pytest.MarkDecorator]:
    """The marks of a module of real-server tests sharing one lab (module-scoped loop)."""
    return [
        NEEDS_ROOT,
        pytest.mark.galera,
        pytest.mark.usefixtures("galera_installed"),
        pytest.mark.asyncio(loop_scope="module"),
        pytest.mark.timeout(timeout),
    ]
