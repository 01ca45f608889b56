"""Paths in a spec (pure): :data:`AbsolutePath` for a file or directory named on every node,
and per-node directories: ``{node.name}`` in a server kind's ``base_dir`` (:data:`BaseDir`).

Contract: a ``base_dir`` is an absolute path that may hold ``{node.name}`` (any number of
times) and no other ``{`` or ``}``; :func:`for_node` puts the node's name in its place. On
separate machines the plain default is right; the template is for nodes that share one
filesystem (the lab's namespaces, containers on one host), where two members must never share
a data directory.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

NODE_NAME = "{node.name}"


def check_absolute(value: str) -> str:
    """``value`` when it is an absolute path; ValueError (naming it) else."""
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: give an absolute path")
    return value


def check_base_dir(value: str) -> str:
    """``value`` when it is a valid ``base_dir`` (see the module contract); ValueError else."""
    check_absolute(value)
    rest = value.replace(NODE_NAME, "")
    if "{" in rest or "}" in rest:
        raise ValueError(f"{value!r}: the only placeholder a base_dir may hold is {NODE_NAME}")
    return value


def for_node(base_dir: str, node: str) -> str:
    """``base_dir`` with ``{node.name}`` replaced by ``node``."""
    return base_dir.replace(NODE_NAME, node)


AbsolutePath = Annotated[str, AfterValidator(check_absolute)]
BaseDir = Annotated[str, AfterValidator(check_base_dir)]
