"""The lab's real servers: MariaDB Galera and RabbitMQ in the node namespaces, or stand-ins.

A spec's ``galera:`` and ``rabbitmq:`` resources run the real servers in the lab when their
packages are installed (``make server-packages``), each node's agent starting its own member
exactly as on a real node; otherwise they fall back to the HTTP stand-in
(:mod:`corral.lab.standins`) and the lab says so in a note.

Contract:

- :func:`choose` (pure given its probe) decides which kinds run for real: ``standin``: none;
  ``real``: every stateful kind of the spec, LabError naming what is missing otherwise;
  ``auto``: those whose binaries the probe finds, with a note for each fallback.
- :func:`real_body` (pure) rewrites one resource of a chosen kind for the lab: its
  ``base_dir`` becomes ``<lab>/servers/{node.name}`` (the lab's nodes share one filesystem;
  the member adds ``/<resource>``), each secret reference a lab file
  (``<lab>/secrets/<resource>.<field>``), small memory settings for Galera where the spec
  set none, and ``run_as: root`` when the spec's user cannot reach the lab directory.
- The shell: :func:`write_secrets` writes each secret file 0600 in a 0700 directory (fresh
  random values; the lab's own, never the operator's); :func:`reachable` tells whether an OS
  user can enter a directory; the hosts files (``/etc/netns/<ns>/hosts``, every node's name
  to its address, what ``rabbit@<node>`` needs) are written with
  :func:`corral.drivers.rabbitmq.write_netns_hosts` before an agent starts and removed at
  ``down``. The servers and their epmd run in the node namespaces, so ``down`` ends them
  with every other process there.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.drivers.rabbitmq import remove_netns_hosts, write_netns_hosts
from corral.lab.layout import LabError

if TYPE_CHECKING:
    from corral.spec import Spec

KINDS = ("galera", "rabbitmq")
CHOICES = ("auto", "real", "standin")
NEEDS: dict[str, tuple[str, ...]] = {
    "galera": (
        "/usr/sbin/mariadbd",
        "/usr/bin/mariadb-install-db",
        "/usr/lib/galera/libgalera_smm.so",
        "/usr/bin/mariabackup",
    ),
    "rabbitmq": ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/bin/epmd"),
}
SECRET_FIELDS = {
    "galera": ("sst_password", "check_password"),
    "rabbitmq": ("erlang_cookie", "password"),
}
# a demo database, not a production one: 3 x 128 MB of buffer pool would crowd a small machine
GALERA_OPTIONS = {
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "16M",
    "performance_schema": "OFF",
}
GALERA_PROVIDER = {"gcache.size": "16M"}
Probe = Callable[[str], list[str]]
NETNS_ETC = Path("/etc/netns")


def installed(kind: str) -> list[str]:
    """What kind ``kind`` needs that this machine lacks (empty: it can run for real)."""
    return [path for path in NEEDS[kind] if not os.path.exists(path)]


def choose(
    servers: str, kinds: Iterable[str], probe: Probe = installed
) -> tuple[set[str], list[str]]:
    """The stateful kinds (of ``kinds``, those the spec uses) that run real servers, and the
    notes saying what falls back to a stand-in and why (see the module contract)."""
    if servers not in CHOICES:
        raise LabError(f"servers {servers!r}: use {', '.join(CHOICES)}")
    wanted = sorted(set(kinds) & set(KINDS))
    if servers == "standin":
        return set(), [f"{k}: HTTP stand-in (asked for stand-ins)" for k in wanted]
    real, notes = set(), []
    for kind in wanted:
        missing = probe(kind)
        if not missing:
            real.add(kind)
            notes.append(f"{kind}: the real server in every node's namespace")
        elif servers == "real":
            raise LabError(
                f"{kind}: not installed here (missing {', '.join(missing)}): "
                "run `make server-packages`, or use --servers auto"
            )
        else:
            notes.append(
                f"{kind}: HTTP stand-in: the server is not installed (missing "
                f"{', '.join(missing)}; `make server-packages` installs it)"
            )
    return real, notes


def secret_path(lab_dir: Path, resource: str, field: str) -> Path:
    return lab_dir / "secrets" / f"{resource}.{field}"


def real_body(
    name: str, body: dict[str, Any], kind: str, lab_dir: Path, run_as_root: bool
) -> list[str]:
    """Rewrite resource ``name``'s ``body`` (of kind ``kind``) to run the real server in the
    lab (see the module contract); the notes of what changed."""
    settings = body.get(kind)
    settings = dict(settings) if isinstance(settings, dict) else {}
    settings["base_dir"] = str(lab_dir / "servers" / "{node.name}")
    for field in SECRET_FIELDS[kind]:  # every one: the demo's clients log in with them
        settings[field] = {"file": str(secret_path(lab_dir, name, field))}
    notes = []
    if kind == "galera":
        options = dict(settings.get("options") or {})
        settings["options"] = {**GALERA_OPTIONS, **options}
        provider = dict(settings.get("provider_options") or {})
        settings["provider_options"] = {**GALERA_PROVIDER, **provider}
        if run_as_root:
            settings["run_as"] = "root"
            notes.append(f"{name}: mariadbd runs as root (its user cannot reach {lab_dir})")
    body[kind] = settings
    return notes


def secret_files(spec: Spec, lab_dir: Path) -> list[Path]:
    """The lab's secret files that the (rewritten) ``spec`` names."""
    out = []
    for res in spec.resources.values():
        for kind in KINDS:
            settings = getattr(res, kind)
            for field in SECRET_FIELDS[kind] if settings is not None else ():
                ref = getattr(settings, field)
                if ref is not None and ref.file and Path(ref.file).parent == lab_dir / "secrets":
                    out.append(Path(ref.file))
    return out


def write_secrets(paths: Iterable[Path]) -> None:
    """A fresh random value in each file, 0600, in 0700 directories (root's: the agents
    resolve the references as root)."""
    for path in paths:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        value = (
            secrets.token_hex(16).upper() if path.name.endswith("cookie") else secrets.token_hex(12)
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")


def reachable(directory: Path, user: str) -> bool:
    """Whether OS user ``user`` can enter ``directory`` (every ancestor searchable by it);
    True for root, False for a user that does not exist."""
    if user == "root":
        return True
    try:
        who = pwd.getpwnam(user)
    except KeyError:
        return False
    for parent in [directory, *directory.parents]:
        try:
            info = parent.stat()
        except FileNotFoundError:
            continue  # made later, by root, 0755 (see Lab._build)
        if not (
            info.st_mode & 0o001
            or (info.st_uid == who.pw_uid and info.st_mode & 0o100)
            or (info.st_gid == who.pw_gid and info.st_mode & 0o010)
        ):
            return False
    return True


# --- the lab's shell ------------------------------------------------------------------------


def plan_servers(
    lab_dir: Path, text: str, servers: str, probe: Probe = installed
) -> tuple[set[str], bool, list[str]]:
    """For the spec ``text``: the kinds that run real servers (:func:`choose`), whether
    mariadbd must run as root (the spec's user cannot reach ``lab_dir``), and the notes."""
    from corral.spec import load_spec_text

    spec = load_spec_text(text)
    real, notes = choose(servers, {r.kind for r in spec.resources.values()}, probe)
    users = {r.galera.run_as for r in spec.resources.values() if r.galera is not None}
    root = "galera" in real and not all(reachable(lab_dir / "servers", u) for u in users)
    return real, root, notes


def prepare(lab_dir: Path, spec: Spec, state: dict[str, Any]) -> None:
    """Before any agent starts: the servers' directory (0755: mariadbd's user enters it), the
    secret files, and each node namespace's hosts file naming every node."""
    for sub in ["", *state["nodes"]]:  # made here: a member would make its parents 0700
        (lab_dir / "servers" / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
        (lab_dir / "servers" / sub).chmod(0o755)
    write_secrets(secret_files(spec, lab_dir))
    names = {name: str(node.address) for name, node in spec.nodes.items()}
    for rec in state["nodes"].values():
        write_netns_hosts(rec["ns"], names)


def clean(lab_dir: Path, prefix: str) -> list[str]:
    """Remove what :func:`prepare` made and the servers' data: the hosts files of every
    namespace named ``<prefix>*`` and the lab's ``servers/`` and ``secrets/``. Call it once
    every process of the lab has ended. Returns what it removed."""
    removed = []
    for hosts in sorted(NETNS_ETC.glob(f"{prefix}*")):
        remove_netns_hosts(hosts.name)
        removed.append(str(hosts))
    for sub in ("servers", "secrets"):
        if (lab_dir / sub).exists():
            shutil.rmtree(lab_dir / sub, ignore_errors=True)
            removed.append(str(lab_dir / sub))
    return removed
