"""The lab's store over TLS (``corral lab up --tls``): a CA bundle in the lab directory, the
spec's embedded store set to ``tls: {bundle: <lab>/ca}`` (each agent issues its own node
certificate from it, as on a real controller, and makes etcd enforce corral's roles), and an
admin identity ``lab-admin`` that the lab's own commands present (through
``CORRAL_ETCD_CA/CERT/KEY`` for the CLI, etcdctl's options for the store reads of
:mod:`corral.lab.gateway`, the chaos checker's included).

With etcd auth on, ``lab-admin`` must be an etcd user with the admin role: :func:`grant_admin`
does what an operator does (``corral auth user lab-admin --role admin`` as etcd's root)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corral.lab import gateway, netns
from corral.lab.layout import LabError

# corral.pki, corral.auth, the store and the spec are imported where they are used: every lab
# command imports this module through corral.lab.lab, the lab's fence agent among them, and a
# fence that spends 0.4 s importing cryptography and pydantic delays every failover it does.

ADMIN = "lab-admin"
ROOT_DIR = "root-tls"  # etcd root's certificate, for grant_admin


def prepare(lab_dir: Path, spec_text: str) -> tuple[str, list[str]]:
    """``(spec text with TLS, [ca, cert, key] of the lab's admin)``; a spec that names its own
    ``tls`` keeps it (its files are then the operator's business)."""
    import yaml

    from corral.pki import PkiError, init_bundle, issue_identity
    from corral.spec.yamlpos import load_yaml

    raw, _ = load_yaml(spec_text)
    store = raw.get("store", "embedded")
    if store == "embedded":
        store = {"embedded": {}}
    if not isinstance(store, dict) or not isinstance(store.get("embedded"), dict):
        raise LabError("--tls needs the embedded store")
    try:
        ca = init_bundle(lab_dir / "ca", str(raw.get("cluster", "lab")), time.time())
        admin = issue_identity(ca, ADMIN, "admin", lab_dir / "admin-tls", time.time())
    except PkiError as exc:
        raise LabError(str(exc)) from None
    store["embedded"].setdefault("tls", {"bundle": str(lab_dir / "ca")})
    raw["store"] = store
    return yaml.safe_dump(raw, sort_keys=False), list(admin.as_tuple())


def with_env(files: Sequence[str] | None, argv: list[str]) -> list[str]:
    """``argv`` run with the admin identity in the environment (unchanged without TLS)."""
    if not files:
        return argv
    from corral.store.tls import ENV

    return ["env", *(f"{k}={v}" for k, v in zip(ENV, files, strict=True)), *argv]


def grant_admin(lab: Any, timeout: float) -> None:
    """With TLS (a :class:`~corral.lab.lab.Lab` whose state has ``tls``): ``lab-admin`` made
    an etcd user with the admin role and its ``auth/users`` record, by ``corral auth user``
    run in the client namespace as etcd's root (a certificate from the lab's CA in
    ``<lab>/root-tls``) once the agents made corral's roles (polled with etcdctl). Without
    TLS: nothing. LabError after ``timeout`` seconds, with the last refusal."""
    state = lab.state()
    if not state.get("tls"):
        return
    from corral.auth.roles import etcd_role
    from corral.pki import bundle_identity
    from corral.pki.identity import ROOT

    root = bundle_identity(lab.dir / "ca", ROOT, "admin", lab.dir / ROOT_DIR, time.time())
    ns, ends = state["client"]["ns"], ",".join(lab.store_endpoints())
    role = ["role", "get", etcd_role(state["cluster"], "admin")]
    has_role = netns.exec_argv(ns, [*gateway.etcdctl_argv(ends, 2.0, root.as_tuple()), *role])
    grant = [lab.python, "-m", "corral.cli.main", "auth", "user", ADMIN, "--role", "admin"]
    grant = netns.exec_argv(ns, with_env(root.as_tuple(), [*grant, "--spec", str(lab.spec_file)]))
    deadline, last = time.monotonic() + timeout, "etcd has no admin role yet"
    while time.monotonic() < deadline:
        if subprocess.run(has_role, capture_output=True, timeout=30).returncode == 0:
            done = subprocess.run(grant, capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                return
            last = done.stderr.strip()
        time.sleep(0.3)
    raise LabError(f"{ADMIN} not made an etcd admin within {timeout:g}s: {last}")
