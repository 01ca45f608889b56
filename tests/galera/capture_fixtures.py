"""Capture tests/galera/fixtures from real servers (rerun by hand, then review the diff):

    PYTHONPATH=src python -m tests.galera.capture_fixtures

Scenarios, each a directory of ``<node>/{grastate.dat,gvwstate.dat,recover.log}`` (a file
missing when the server left none; ``recover.log`` only where ``inspect()`` ran a recovery):

- ``formed``: three nodes formed from nothing, all running (files read while they run);
- ``clean-stop``: the three stopped one after the other (the last one safe to bootstrap);
- ``kill9-all``: the three killed -9 at once after writes;
- ``one-dead-earlier``: db3 killed -9, then writes through db1, then db1 and db2 killed -9
  (db3's saved view has three members, the others' two).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.galera.lab import GaleraLab, galera_lab, kill9, wait_for

FIXTURES = Path(__file__).with_name("fixtures")


async def _save(lab: GaleraLab, scenario: str, inspect: bool) -> None:
    for server in lab.servers:
        where = FIXTURES / scenario / server.settings.node
        where.mkdir(parents=True, exist_ok=True)
        if inspect:
            await server.inspect()
            if server.settings.recover_log.exists():
                shutil.copy(server.settings.recover_log, where / "recover.log")
        for name in ("grastate.dat", "gvwstate.dat"):
            source = server.settings.datadir / name
            if source.exists():
                shutil.copy(source, where / name)


async def _writes(lab: GaleraLab, via: int, first: int, count: int) -> None:
    for i in range(first, first + count):
        await lab.server(via).execute("INSERT INTO t.w VALUES (%s, 'x')", (i,))


async def _formed(lab: GaleraLab) -> None:
    await asyncio.gather(*(s.initialize() for s in lab.servers))
    await lab.server(1).start(bootstrap=True)
    await lab.server(1).ensure_users()
    await lab.server(1).execute("CREATE DATABASE t")
    await lab.server(1).execute("CREATE TABLE t.w (id INT PRIMARY KEY, v TEXT)")
    await lab.server(2).start()
    await lab.server(3).start()


async def _restart(lab: GaleraLab) -> None:
    states = await asyncio.gather(*(s.inspect() for s in lab.servers))
    await asyncio.gather(
        *(s.start(position=st.recovered) for s, st in zip(lab.servers, states, strict=True))
    )


async def capture(tmp: Path) -> None:
    shutil.rmtree(FIXTURES, ignore_errors=True)
    async with galera_lab(tmp, start_timeout=180) as lab:
        await _formed(lab)
        await _writes(lab, 1, 0, 20)
        await _save(lab, "formed", inspect=False)
        for server in lab.servers:
            await server.stop()
        await _save(lab, "clean-stop", inspect=True)
        order = [lab.server(3), lab.server(1), lab.server(2)]
        await order[0].start(bootstrap=True)  # the last one stopped is safe to bootstrap
        await asyncio.gather(*(s.start() for s in order[1:]))
        await _writes(lab, 1, 20, 20)
        await asyncio.gather(*(kill9(s) for s in lab.servers))
        await _save(lab, "kill9-all", inspect=True)
        await _restart(lab)
        await kill9(lab.server(3))
        await wait_for(lab.server(1), lambda st: st.cluster_size == 2 and st.healthy)
        await _writes(lab, 1, 40, 20)
        await asyncio.gather(kill9(lab.server(1)), kill9(lab.server(2)))
        await _save(lab, "one-dead-earlier", inspect=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="galera-capture-") as tmp:
        asyncio.run(capture(Path(tmp)))
    print(f"fixtures written under {FIXTURES}", file=sys.stderr)
