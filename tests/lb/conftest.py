"""Fixtures: short run directories (unix socket paths), backend apps, a started HAProxy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.drivers.base import NodeContext
from corral.drivers.haproxy import HaproxyService
from corral.spec.model import Spec
from tests.lb.helpers import BACKENDS, LB, VIPS, App, free_port, make_spec, spec_text

if shutil.which("haproxy") is None:
    pytest.skip("haproxy is not installed", allow_module_level=True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107-byte unix socket path limit.
    path = Path(tempfile.mkdtemp(prefix="chp-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Lab:
    spec: list[Spec]  # a one-element box: tests swap the spec the driver renders
    apps: list[App]
    port: int
    backend_port: int
    stats_port: int
    service: HaproxyService
    node: NodeContext

    def provider(self) -> Spec:
        return self.spec[0]


@pytest.fixture
def apps(short_dir: Path) -> Iterator[tuple[list[App], int]]:
    backend_port = free_port(BACKENDS)
    made = [App(h, backend_port, short_dir / f"mode-{h}") for h in BACKENDS]
    try:
        for app in made:
            app.set_mode("ok")
            app.start()
        yield made, backend_port
    finally:
        for app in made:
            app.kill()


def make_service(short_dir: Path, spec_box: list[Spec], **kw: object) -> HaproxyService:
    node = NodeContext("lb1", LB, state_dir=short_dir / "state")
    res = spec_box[0].resources["haproxy"]
    return HaproxyService("haproxy", res, node, lambda: spec_box[0], stop_timeout=3.0, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def lab(short_dir: Path, apps: tuple[list[App], int]) -> AsyncIterator[Lab]:
    made, backend_port = apps
    port, stats_port = free_port(VIPS), free_port((LB,))
    box = [make_spec(spec_text(port, backend_port, stats_port))]
    service = make_service(short_dir, box)
    try:
        await service.start()
        yield Lab(box, made, port, backend_port, stats_port, service, service.node)
    finally:
        await service.stop()
