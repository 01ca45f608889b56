"""The lab's store over TLS (``corral lab up --tls``): a CA bundle in the lab directory, the
spec's embedded store set to ``tls: {bundle: <lab>/ca}`` (each agent issues its own node
certificate from it, as on a real controller), and an admin identity ``lab-admin`` that the
lab's own commands present (through ``CORRAL_ETCD_CA/CERT/KEY`` for the CLI, curl's options
for the gateway reads).

What it does not cover yet: the chaos runs' checker reads the store with plain curl."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from corral.lab.layout import LabError
from corral.pki import PkiError, init_bundle, issue_identity
from corral.pki.files import ENV
from corral.spec.yamlpos import load_yaml


def prepare(lab_dir: Path, spec_text: str) -> tuple[str, list[str]]:
    """``(spec text with TLS, [ca, cert, key] of the lab's admin)``; a spec that names its own
    ``tls`` keeps it (its files are then the operator's business)."""
    raw, _ = load_yaml(spec_text)
    store = raw.get("store", "embedded")
    if store == "embedded":
        store = {"embedded": {}}
    if not isinstance(store, dict) or not isinstance(store.get("embedded"), dict):
        raise LabError("--tls needs the embedded store")
    try:
        ca = init_bundle(lab_dir / "ca", str(raw.get("cluster", "lab")), time.time())
        admin = issue_identity(ca, "lab-admin", "admin", lab_dir / "admin-tls", time.time())
    except PkiError as exc:
        raise LabError(str(exc)) from None
    store["embedded"].setdefault("tls", {"bundle": str(lab_dir / "ca")})
    raw["store"] = store
    return yaml.safe_dump(raw, sort_keys=False), list(admin.as_tuple())


def with_env(files: Sequence[str] | None, argv: list[str]) -> list[str]:
    """``argv`` run with the admin identity in the environment (unchanged without TLS)."""
    if not files:
        return argv
    return ["env", *(f"{k}={v}" for k, v in zip(ENV, files, strict=True)), *argv]
