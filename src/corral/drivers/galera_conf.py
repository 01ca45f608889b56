"""What one MariaDB Galera node is told: its settings and the ``my.cnf`` rendered from them
(pure; the server shell is :mod:`corral.drivers.galera`).

The file is the node's only configuration (mariadbd runs with ``--defaults-file``, so no
``/etc/mysql`` file of the host is read). Layout under ``base_dir``: ``my.cnf``,
``data/`` (the datadir), ``tmp/`` (its tmpdir), ``run/`` (socket, mariadbd's pid file,
corral's pid record), ``mariadbd.log`` (the server's error log, with corral's own lines) and
``recover.log`` (the last ``--wsrep-recover``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from corral.spec.secrets import SecretRef

PROVIDER = "/usr/lib/galera/libgalera_smm.so"  # Debian's galera-4
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
# SST by mariabackup: the donor stays writable during the copy (rsync SST blocks it with a
# global read lock for the whole transfer, and the donor may be the writer).
SST_METHODS = ("mariabackup", "rsync")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
_USER = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.:\[\]-]+\Z")  # an IP or a host name, nothing more
_OPTION = re.compile(r"^[a-z0-9_-]+\Z")


@dataclass(frozen=True)
class GaleraSettings:
    """One node of one Galera cluster.

    ``peers``: the addresses of every member (this node's too), the ``gcomm://`` list.
    ``provider_options``: ``wsrep_provider_options`` as one string (``evs.suspect_timeout=PT2S;
    pc.recovery=TRUE``), passed on untouched. ``run_as``: the OS user mariadbd runs as (``mysql``
    on a real node; ``root`` in tests). ``netns``: run mariadbd (and its helpers) in this
    network namespace (``ip netns exec``); None when the agent already runs in the node's.
    ``options``: further ``[mysqld]`` settings (``innodb_buffer_pool_size``).
    """

    node: str
    address: str
    peers: tuple[str, ...]
    cluster: str
    base_dir: Path
    port: int = 3306
    sst_method: str = "mariabackup"
    sst_user: str = "sst"
    sst_password: SecretRef | None = None
    check_user: str = "monitor"
    check_password: SecretRef | None = None
    provider_options: str = ""
    run_as: str = "mysql"
    netns: str | None = None
    provider: str = PROVIDER
    mariadbd: str = MARIADBD
    install_db: str = INSTALL_DB
    options: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ValueError("galera settings: bad " + "; bad ".join(problems))

    def _problems(self) -> list[str]:
        """One entry per setting: '' when it is fine, else what is wrong with it."""
        users = (("sst_user", self.sst_user), ("check_user", self.check_user))
        return [
            "" if _NAME.match(self.node) else f"node name {self.node!r} (letters, digits, _ . -)",
            ""
            if _NAME.match(self.cluster)
            else f"cluster name {self.cluster!r} (letters, digits, _ . -)",
            "" if self.peers else "no peers (the gcomm:// list needs at least this node)",
            ""
            if self.sst_method in SST_METHODS
            else f"sst_method {self.sst_method!r} (one of {', '.join(SST_METHODS)})",
            *(
                f"{label} {user!r} (letters, digits, _)"
                for label, user in users
                if not _USER.match(user)
            ),
            *(f"address {a!r}" for a in (self.address, *self.peers) if not _ADDRESS.match(a)),
            "provider_options (one line)" if "\n" in self.provider_options else "",
            "" if 0 < self.port < 65536 else f"port {self.port}",
            *(f"option {k!r}" for k, v in self.options if not _OPTION.match(k) or "\n" in v),
        ]

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.run_dir / "mysqld.sock"

    @property
    def tmp_dir(self) -> Path:
        return self.base_dir / "tmp"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mariadbd.log"

    @property
    def recover_log(self) -> Path:
        return self.base_dir / "recover.log"


def _quote(value: str) -> str:
    """A value for my.cnf: quoted (mysql's option files take \\\\ and \\" escapes in quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(s: GaleraSettings, sst_auth: str | None) -> str:
    """The node's my.cnf. ``sst_auth``: ``user:password`` for the donor's SST helper (the
    password resolved from its reference just before the start); None leaves it out (the SST
    helper then logs in through the socket as the OS user, unix_socket authentication). The
    file holds that password, so it is written 0600 in a 0700 directory."""
    lines = [
        "# written by corral; every start rewrites it",
        "[mysqld]",
        f"datadir={s.datadir}",
        f"socket={s.socket}",
        f"pid-file={s.run_dir / 'mariadbd.pid'}",
        f"log-error={s.log_path}",
        f"tmpdir={s.tmp_dir}",  # a node's own: temporary table names of two servers collide
        f"port={s.port}",
        f"bind-address={s.address}",
        "skip-name-resolve",
        "binlog_format=ROW",
        "default_storage_engine=InnoDB",
        "innodb_autoinc_lock_mode=2",
        "wsrep_on=ON",
        f"wsrep_provider={s.provider}",
        f"wsrep_cluster_name={s.cluster}",
        f"wsrep_cluster_address=gcomm://{','.join(s.peers)}",
        f"wsrep_node_address={s.address}",
        f"wsrep_node_name={s.node}",
        f"wsrep_sst_method={s.sst_method}",
    ]
    if s.provider_options:
        lines.append(f"wsrep_provider_options={_quote(s.provider_options)}")
    if sst_auth is not None:
        lines.append(f"wsrep_sst_auth={_quote(sst_auth)}")
    lines += [f"{key}={value}" for key, value in s.options]
    # the SST helper would otherwise keep every old log under /tmp/sst_log_archive
    lines += ["", "[sst]", "sst-log-archive=0"]
    lines += ["", "[client]", f"socket={s.socket}", ""]
    return "\n".join(lines)
