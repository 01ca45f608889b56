"""The ``galera:`` resource kind: one MariaDB Galera cluster, one server per node (spec model).

Contract:

- A galera resource is promotable: an unpromoted instance is a stopped ``mariadbd`` whose
  state is reported to the store; a promoted one is a member of the cluster. Every instance is
  promoted in the usual setup (``promoted`` defaults to the number of instances:
  multi-master), and one writer (``corral.core.galera.writer``) takes the writes.
- Secrets by reference only (:mod:`corral.spec.secrets`): ``sst_password`` and
  ``check_password`` are :class:`SecretRef`; users are plain names.
- ``bootstrap_wait`` is how long the controller waits for gone (fenced) nodes before it
  bootstraps from a majority without them (:data:`corral.core.galera.bootstrap.DEFAULT_WAIT`).
- ``provider_options`` entries are added to the ``evs.*`` timeouts corral derives from the
  timing profile (:func:`corral.core.galera.evs.provider_options`); an entry of the same name
  replaces a derived one, and ``validate --explain`` says so.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from corral.core.galera.bootstrap import DEFAULT_WAIT
from corral.spec.durations import Duration
from corral.spec.paths import BaseDir
from corral.spec.secrets import GaleraSecrets

_USER = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+\Z")  # gcache.size, evs.foo
_OPTION_NAME = re.compile(r"^[a-z0-9_-]+\Z")


class GaleraSpec(GaleraSecrets):
    """One MariaDB Galera node per eligible node (see the module contract); the users and
    their password references are :class:`GaleraSecrets`'s fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base_dir: BaseDir = Field(
        default="/var/lib/corral/galera",
        description="mariadbd's own directory on each node: data/ (the datadir), my.cnf, run/; "
        "may hold {node.name} (nodes that share one filesystem)",
    )
    port: int = Field(default=3306, ge=1, le=65535, description="SQL port on the node address")
    sst_method: Literal["mariabackup", "rsync"] = Field(
        default="mariabackup",
        description="full state transfer tool (mariabackup keeps the donor writable)",
    )
    bootstrap_wait: Duration = Field(
        default=DEFAULT_WAIT,
        description="how long to wait for gone (fenced) nodes before bootstrapping without them",
    )
    provider_options: dict[str, str] = Field(
        default={}, description="wsrep_provider_options entries added to the derived evs.*"
    )
    options: dict[str, str] = Field(default={}, description="further [mysqld] settings")
    run_as: str = Field(default="mysql", description="the OS user mariadbd runs as")

    @field_validator("sst_user", "check_user", "run_as")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError(f"{value!r}: a user name is 1-32 letters, digits or _")
        return value

    @field_validator("provider_options")
    @classmethod
    def _provider(cls, value: dict[str, str]) -> dict[str, str]:
        for name, entry in value.items():
            if not _PROVIDER_NAME.match(name):
                raise ValueError(f"{name!r}: a provider option is named like gcache.size")
            if any(c in entry for c in ";\n"):
                raise ValueError(f"{name}: the value may not hold ';' or a line break")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str]) -> dict[str, str]:
        for name, entry in value.items():
            if not _OPTION_NAME.match(name):
                raise ValueError(f"{name!r}: a [mysqld] option is named like innodb_log_file_size")
            if "\n" in entry:
                raise ValueError(f"{name}: the value may not hold a line break")
        return value
