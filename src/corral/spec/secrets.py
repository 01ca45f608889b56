"""Secrets by reference: the spec names *where* a secret is, never the secret itself.

A spec is stored in etcd (the ``spec`` record), copied into every agent's state dir, printed by
``corral validate --explain`` and diffed by ``corral spec push``: a password written in it would
be everywhere. So a value that is a secret is a :class:`SecretRef`::

    password: {file: /etc/corral/secrets/ipmi.pw}          # a root-only file (0600/0400)
    password: {exec: "/usr/local/bin/get-secret ipmi"}     # prints the secret on stdout
    password: {exec: "/usr/local/bin/get-secret ipmi", timeout: 2s}

Contract:

- A reference is resolved only at the moment of use, by the node that uses it
  (:mod:`corral.drivers.secrets`): a fence device's password by the node that runs the fence
  (the controller, or a lease guard), so the file or script must exist on every node that may
  fence. The resolved value lives in that process's memory for one use; it is never written to
  the store, an event, a log, a status or a dump (the drivers redact it from agent output).
- A parameter whose *name* says it is a secret (:func:`is_secret_name`: password, passwd,
  passphrase, secret, token, key, cookie, pw, ...) must be a reference; a literal value is
  refused by :func:`literal_secrets` with the parameter's line. Names that end in ``_file``,
  ``_script`` or ``_path`` (``password_script``, ``identity_file``) name a place, not a
  secret, and stay literal. Any other parameter may be a reference too (a BMC login).
- The kinds still to come take their secrets as references, in these fields (the type is
  :class:`SecretRef`; users are plain strings)::

      galera:   {sst_user: sst, sst_password: <ref>, check_user: monitor,
                 check_password: <ref>}
      rabbitmq: {erlang_cookie: <ref>}
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.spec.durations import Duration

_WORDS = re.compile(r"[a-z0-9]+")
# words that make a parameter a secret; words that contain one of _INSIDE are secrets too
_SECRET_WORDS = {"password", "passwd", "passphrase", "secret", "token", "key", "cookie", "pw"}
_SECRET_WORDS |= {"pass", "pwd", "apikey", "privkey", "credential", "credentials", "kg"}
_INSIDE = ("password", "passwd", "secret", "token", "cookie")
_PLACE_SUFFIXES = ("file", "script", "path", "dir")


def is_secret_name(name: str) -> bool:
    """True when a parameter called ``name`` holds a secret (``password``, ``api_key``,
    ``erlang-cookie``, ``authToken``), false for one that names where a secret is
    (``password_script``, ``identity_file``) or for anything else (``login``, ``ip``)."""
    words = _WORDS.findall(re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    if not words or words[-1] in _PLACE_SUFFIXES:
        return False
    return any(w in _SECRET_WORDS or any(part in w for part in _INSIDE) for w in words)


class SecretRef(BaseModel):
    """Where a secret is: exactly one of ``file`` (an absolute path to a file readable by root
    only, mode 0600 or 0400; one trailing newline is dropped) or ``exec`` (a command line whose
    stdout is the secret, killed after ``timeout``; it must exit 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = Field(default=None, description="absolute path of a root-only file")
    exec: str | None = Field(default=None, description="command printing the secret on stdout")
    timeout: Duration = Field(default=5.0, description="exec: killed and failed after this")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.exec is None):
            raise ValueError(
                "a secret reference needs exactly one of 'file' (a root-only file) or "
                "'exec' (a command printing the secret)"
            )
        if self.file is not None and not self.file.startswith("/"):
            raise ValueError(f"secret file {self.file!r} must be an absolute path")
        if self.exec is not None and not self.exec.strip():
            raise ValueError("secret exec is an empty command")
        return self

    def describe(self) -> str:
        """The reference (never the secret) for messages: ``file /etc/...`` or ``exec '...'``."""
        return f"file {self.file}" if self.file is not None else f"exec {self.exec!r}"


def literal_secrets(
    path: tuple[str | int, ...], params: Mapping[str, Any]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(path, message)`` for every parameter of ``params`` (found at ``path`` in the spec)
    that is named like a secret and written as a literal instead of a :class:`SecretRef`."""
    for key, value in params.items():
        if is_secret_name(key) and not isinstance(value, SecretRef):
            yield (
                (*path, key),
                f"{key!r} is a secret written in clear; the spec is stored in etcd and shown "
                f"by corral, so give a reference instead: {key}: {{file: "
                f"/etc/corral/secrets/<name>}} (owned by root, mode 0600) or {key}: "
                '{exec: "/usr/local/bin/get-secret <name>"}',
            )


def literal_in_command(command: str) -> str | None:
    """A message when ``command`` carries a secret option in clear (``--password=x``,
    ``--token x``), else None. Short options are not judged (``-p`` is a port as often as a
    password); ``$VAR``, ``@file`` and absolute-path values (``--key /etc/ssl/k.pem``) are
    references of the command's own."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word, following in zip(words, [*words[1:], ""], strict=False):  # "" after the last
        if not word.startswith("--"):
            continue
        name, eq, value = word[2:].partition("=")
        value = value if eq else ("" if following.startswith("-") else following)
        if is_secret_name(name) and value and not value.startswith(("$", "@", "/")):
            return (
                f"--{name} is a secret written in clear on a command line (the spec is stored "
                "in etcd, a command line is seen by every local user in ps): let the command "
                "read it from a root-only file (a --*-file option, --defaults-extra-file, a "
                "wrapper script)"
            )
    return None


class GaleraSecrets(BaseModel):
    """The secrets of the ``galera`` kind (:class:`corral.spec.galera.GaleraSpec`; its users
    are plain names, their passwords references): the SST user wsrep_sst_auth uses, the user
    health checks log in as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sst_user: str = "sst"
    sst_password: SecretRef | None = None
    check_user: str = "monitor"
    check_password: SecretRef | None = None


class RabbitmqSecrets(BaseModel):
    """The secret of the ``rabbitmq`` kind (:class:`corral.spec.rabbitmq.RabbitmqSpec`): the
    Erlang cookie every node must share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    erlang_cookie: SecretRef | None = None
