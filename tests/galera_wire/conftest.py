"""The real-server test here shares tests/galera's check that the packages are installed."""

from tests.galera.conftest import galera_installed

__all__ = ["galera_installed"]
