"""The layers of corral's packages, kept true (docs/architecture.md, "Layers").

- ``corral.core`` and ``corral.spec`` are the model: pure, they import nothing of corral but
  each other (and the top-level utilities).
- Every other package has a rank; a module imports only packages of a lower rank or its own:
  no package imports a shell above it, so the import graph of the packages has no cycle.
- No module imports another package's private module (``corral.<pkg>._name``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
RANK = {
    "": 0,  # top-level modules: corral.aio, corral.fileio, corral.__init__
    "core": 0,  # with core/galera: the Galera decisions and its state-file parsers (pure)
    "spec": 0,
    "net": 1,
    "store": 1,
    "pki": 2,  # the cluster CA: spec and store (TlsFiles) below it
    "records": 1,  # the store's records: core, spec and store only (ONLY below)
    "auth": 2,  # roles, identities, tokens, audit: store and records below it
    "dns": 2,
    "lb": 2,
    "health": 2,
    "drivers": 3,  # with drivers/galera (mariadbd's shell) and drivers/galera_conf
    "actions": 3,  # the operators' actions (CLI and API): auth, records, store below
    "agent": 4,
    "sim": 4,
    "api": 5,  # the HTTP API: the agent's snapshots and the auth below it
    "lab": 5,
    "cli": 6,
}
MODEL = {"core", "spec", ""}
# The subpackages of corral.core: rank 0, pure like the rest of the cores (the Galera
# decisions included: who bootstraps, the writer, the evs timeouts; their drivers are shells).
CORE_PACKAGES = ("agent", "galera", "membership", "scheduler")
ONLY = {"records": {"core", "spec", "store"}}  # packages narrower than their rank allows


def modules() -> Iterator[tuple[str, str, Path]]:
    """(module name, package, path) of every module under src/corral."""
    for path in sorted((SRC / "corral").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = parts[1] if len(parts) > 2 else ""
        yield name, package, path


def corral_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every absolute import of ``corral.*`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("corral"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("corral")
        ):
            yield node.lineno, str(node.module)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and _is_package(parts[1])) else ""


def _is_package(name: str) -> bool:
    return (SRC / "corral" / name).is_dir()


def test_every_package_has_a_rank() -> None:
    found = {package for _, package, _ in modules()}
    assert found <= set(RANK), f"give {sorted(found - set(RANK))} a rank in RANK"


def test_the_core_subpackages_are_checked_as_cores() -> None:
    for sub in CORE_PACKAGES:
        found = [(n, p) for n, p, _ in modules() if n.startswith(f"corral.core.{sub}")]
        assert found, f"corral.core.{sub} is gone: update CORE_PACKAGES"
        assert all(p == "core" for _, p in found), found


def test_no_module_imports_against_the_layers() -> None:
    wrong = []
    for name, package, path in modules():
        for line, target in corral_imports(path):
            other = package_of(target)
            if other == package:
                continue
            where = f"{path.relative_to(SRC)}:{line} ({name} -> {target})"
            if package in MODEL and other not in MODEL:
                wrong.append(f"{where}: the model imports a shell")
            elif RANK.get(other, 99) > RANK.get(package, 99):
                wrong.append(f"{where}: {package} (rank {RANK[package]}) imports {other} above it")
            elif package in ONLY and other not in ONLY[package]:
                wrong.append(f"{where}: {package} imports only {sorted(ONLY[package])}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_packages_private_module() -> None:
    wrong = []
    for _, package, path in modules():
        for line, target in corral_imports(path):
            parts = target.split(".")
            private = any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
            if private and package_of(target) != package:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def imported_names(node: ast.AST) -> list[str]:
    """The modules an import statement names (absolute imports; [] for any other node)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


SHELL_ONLY = ("time", "os", "socket", "subprocess", "asyncio", "threading", "urllib", "httpx")


def test_the_cores_do_no_io_and_read_no_clock() -> None:
    """A module under corral.core imports none of the I/O or clock modules and calls no
    ``open``: time and randomness come in as arguments (DESIGN: pure cores)."""
    wrong = []
    for _, package, path in modules():
        if package != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = imported_names(node)
            bad = [n for n in names if n.split(".")[0] in SHELL_ONLY]
            if bad:
                wrong.append(
                    f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)} imports {', '.join(bad)}"
                )
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "open"
            ):
                wrong.append(f"{path.relative_to(SRC)}:{node.lineno} calls open()")
    assert not wrong, "\n".join(wrong)


# the demo's queue client (corral.lab.workload) imports it inside its functions: no agent
# imports the lab
HEAVY_CLIENTS = {"aio_pika": {"corral.drivers.rabbitmq_health", "corral.lab.workload"}}


def test_heavy_clients_stay_in_their_driver() -> None:
    """aio-pika costs an agent ~19 MB when imported (measured): only the RabbitMQ health
    check (and the lab's demo client) may import it, so an agent without a RabbitMQ resource
    never pays for it."""
    wrong = []
    for name, _, path in modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for imported in imported_names(node):
                allowed = HEAVY_CLIENTS.get(imported.split(".")[0])
                if allowed is not None and name not in allowed:
                    wrong.append(
                        f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)} imports {imported}"
                    )
    assert not wrong, "\n".join(wrong)
