"""The rules that decide when a node may be fenced and when the lease guard acts (pure parts)."""

from __future__ import annotations

import time
from pathlib import Path

from corral.agent.guard import fence_if_due, stopped_at
from corral.core.controller import plausible
from corral.core.guard import Listing, due, pause


def test_one_agent_whose_gossip_is_cut_off_cannot_fence_the_others() -> None:
    three = ["a", "b", "c"]
    assert not plausible({"a", "b"}, three, me="c")  # c sees both peers die at once
    assert plausible({"c"}, three, me="a")  # one peer of two: a real death is believed
    five = ["a", "b", "c", "d", "e"]
    assert plausible({"b", "c"}, five, me="a")
    assert not plausible({"b", "c", "d"}, five, me="a")
    assert not plausible({"b"}, ["a", "b"], me="a")  # two nodes: wait for the lease
    assert plausible(set(), three, me="a")


def test_the_guard_fences_once_per_deadline_and_again_for_a_new_name(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n")
    now = 100.0
    first = Listing(node="n1", deadline=now - 1.0, exclusive=("ghost",))
    assert not due(Listing(node="n1", deadline=now + 1.0, exclusive=("ghost",)), None, now)
    assert due(first, None, now)
    log = tmp_path / "guard.log"
    fenced = fence_if_due(tmp_path, first, log, None, now)
    assert fenced == first.mark
    assert not due(first, fenced, now)
    assert fence_if_due(tmp_path, first, log, fenced, now) == fenced  # not again for the same
    assert pause(first, fenced, now) == 0.5  # acted on: no busy polling while the agent is dead
    second = Listing(node="n1", deadline=now - 1.0, exclusive=("ghost", "other"))
    assert fence_if_due(tmp_path, second, log, fenced, now) == second.mark  # a new name: too
    assert not due(Listing(deadline=now - 1.0), None, now)  # nothing listed


def test_the_guard_sleeps_until_the_deadline_it_read() -> None:
    now = 100.0
    assert pause(Listing(deadline=now + 0.25, exclusive=("vip",)), None, now) == 0.25
    assert pause(Listing(deadline=now + 9, exclusive=("vip",)), None, now) == 0.5
    assert pause(Listing(deadline=now - 9, exclusive=("vip",)), None, now) == 0.05
    assert pause(Listing(), None, now) == 0.5
    assert pause(Listing(deadline=float("nan"), exclusive=("vip",)), None, now) == 0.5


def test_a_guard_file_that_is_not_a_listing_guards_nothing() -> None:
    for text in ["", "[1]", "{", '{"deadline": "soon", "exclusive": "vip"}', "null"]:
        listing = Listing.parse(text)
        assert not due(listing, None, 1e9), text
    assert Listing.parse('{"exit": true}').exit
    assert not Listing.parse('{"exit": "yes"}').exit


SPEC_TEXT = """
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
  n3: {address: 198.18.0.3}
"""


async def test_a_death_counts_only_after_the_registration_was_seen() -> None:
    from corral.agent.controller import Controller
    from corral.records import encode as dump
    from corral.spec import load_spec_text
    from corral.store import Keys, MemoryStore

    spec = load_spec_text(SPEC_TEXT)
    store, keys = MemoryStore(), Keys("t")
    leases = {}
    for node in spec.nodes:
        leases[node] = (await store.grant(10)).id
        await store.put(keys.node(node), dump({}), lease=leases[node])
    deaths: dict[str, float] = {"n2": time.monotonic()}  # n2 died before n1 saw it registered
    controller = Controller(store, keys, "n1", lambda: spec, deaths=lambda: deaths)
    assert await controller.campaign(leases["n1"])
    await controller.step()  # n1 sees every registration, with no death after it
    kvs = (await store.range(keys.root.encode())).kvs
    assert controller._lost(kvs) == set()  # that death is about n2's previous life
    deaths["n3"] = time.monotonic()  # a death after the registration was seen
    assert controller._lost(kvs) == {"n3"}
    await store.put(keys.node("n3"), dump({}), lease=leases["n3"])  # n3 registers anew
    assert controller._lost((await store.range(keys.root.encode())).kvs) == set()


async def test_a_slow_fence_runs_in_the_background_and_the_cluster_goes_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from corral.agent.controller import Controller
    from corral.records import AssignRecord
    from corral.records import encode as dump
    from corral.spec import load_spec_text
    from corral.store import Keys, MemoryStore

    agent = tmp_path / "fence_slow"
    agent.write_text("#!/bin/sh\ncat >/dev/null\nsleep 1\n")
    agent.chmod(0o755)
    spec = load_spec_text(
        SPEC_TEXT
        + f"fencing:\n  slow: {{agent: {agent}, action: 'off'}}\n"
        + "resources:\n  web: {process: /bin/web}\n  db: {process: /bin/db, mode: active-passive}\n"
    )
    store, keys = MemoryStore(), Keys("t")
    leases = {}
    for node in spec.nodes:
        leases[node] = (await store.grant(30)).id
        await store.put(keys.node(node), dump({}), lease=leases[node])
    deaths: dict[str, float] = {}
    controller = Controller(store, keys, "n1", lambda: spec, deaths=lambda: deaths)
    assert await controller.campaign(leases["n1"])
    await controller.step()
    await store.put(
        keys.status("n3", "db"), dump({"instances": [{"health": "healthy"}]}), lease=leases["n3"]
    )
    await controller.step()
    deaths["n3"] = time.monotonic()
    began = time.monotonic()
    said = await controller.step()  # starts the fence, plans around it
    assert time.monotonic() - began < 0.5, "the step waited for the fence agent"
    web = AssignRecord.read((await store.get(keys.assign("web"))).value)  # type: ignore[union-attr]
    assert sorted(web.nodes) == ["n1", "n2"], said  # n3 left at once
    db = AssignRecord.read((await store.get(keys.assign("db"))).value)  # type: ignore[union-attr]
    assert db.nodes in ([], ["n3"])  # db waits for the fence
    await asyncio.wait_for(controller._fencing["n3"], 5)
    assert await store.get(keys.fenced("n3")) is not None
    assert await store.get(keys.node("n3")) is None  # its lease was revoked


def test_the_deadline_record_moves_the_listing_on_only_when_whole_and_of_its_writer(
    tmp_path: Path,
) -> None:
    import struct

    from corral.agent.guard import GuardWriter, read_deadline, read_listing

    listing, record = tmp_path / "guard.json", tmp_path / "guard.deadline"
    writer = GuardWriter(tmp_path, "n1")
    writer.update(100.0, ["vip"])
    assert read_listing(listing) == Listing("n1", 100.0, ("vip",), writer.token)
    before = listing.stat().st_mtime_ns
    writer.update(105.5, ["vip"])
    assert read_listing(listing).deadline == 105.5  # renewed since the listing was written
    assert listing.stat().st_mtime_ns == before  # the same listing: not rewritten
    raw = record.read_bytes()
    record.write_bytes(struct.pack("<QdQd", writer.token, 99.0, writer.token, 99.0))
    assert read_listing(listing).deadline == 100.0  # never earlier than the listing says
    other = writer.token ^ 1
    record.write_bytes(struct.pack("<QdQd", other, 500.0, other, 500.0))
    assert read_deadline(record, writer.token) is None  # another agent lifetime's record
    assert read_listing(listing).deadline == 100.0
    record.write_bytes(struct.pack("<QdQd", writer.token, 200.0, writer.token, 105.0))
    assert read_deadline(record, writer.token, tries=2) is None  # torn: halves disagree
    nan = float("nan")
    record.write_bytes(struct.pack("<QdQd", writer.token, nan, writer.token, nan))
    assert read_listing(listing).deadline == 100.0
    record.write_bytes(b"short")
    assert read_listing(listing).deadline == 100.0
    record.write_bytes(raw)
    assert read_listing(listing).deadline == 105.5
    writer.update(106.0, [])  # nothing exclusive any more: listed once, then no writes
    assert read_listing(listing).exclusive == ()
    cleared = listing.stat().st_mtime_ns, record.read_bytes()
    writer.update(107.0, [])
    assert (listing.stat().st_mtime_ns, record.read_bytes()) == cleared
    writer.close()


def test_the_guard_records_what_it_stopped_and_when(tmp_path: Path) -> None:
    """Rule 7's evidence: the guard's own record of a stop, read by the agent when it finds
    the instance dead (its view of its renewals may say the lease never lapsed)."""
    (tmp_path / "spec.yaml").write_text(
        "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n"
        "resources:\n  ap: {process: 'sleep 1000', mode: active-passive}\n"
    )
    assert stopped_at(tmp_path, "ap") is None  # never stopped
    listing = Listing(node="n1", deadline=99.0, exclusive=("ap",))
    fence_if_due(tmp_path, listing, tmp_path / "guard.log", None, 100.0)
    assert stopped_at(tmp_path, "ap") == 100.0
    assert "stopped exclusive ap (rule 1)" in (tmp_path / "guard.log").read_text()
    later = Listing(node="n1", deadline=149.0, exclusive=("ap",), token=2)
    fence_if_due(tmp_path, later, tmp_path / "guard.log", listing.mark, 150.0)
    assert stopped_at(tmp_path, "ap") == 150.0  # the last stop counts
    (tmp_path / "guard.stopped").write_text("not json")
    assert stopped_at(tmp_path, "ap") is None  # unreadable: the agent's own view decides
