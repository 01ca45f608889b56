"""The key layout and its name validation."""

from __future__ import annotations

import pytest

from corral.store import Keys


def test_layout() -> None:
    k = Keys("cloud1")
    assert k.spec == b"/corral/cloud1/spec"
    assert k.controller == b"/corral/cloud1/controller"
    assert k.node("ctl1") == b"/corral/cloud1/nodes/ctl1"
    assert k.nodes() == k.prefix("nodes") == b"/corral/cloud1/nodes/"
    assert k.assign("galera") == b"/corral/cloud1/assign/galera"
    assert k.status("ctl1", "galera") == b"/corral/cloud1/status/ctl1/galera"
    assert k.status_prefix("ctl1") == b"/corral/cloud1/status/ctl1/"
    assert k.admin("maintenance") == b"/corral/cloud1/admin/maintenance"
    assert k.admin("maintenance", "ctl1", "galera") == (
        b"/corral/cloud1/admin/maintenance/ctl1/galera"
    )
    assert k.failcount("ctl1", "galera") == b"/corral/cloud1/failcounts/ctl1/galera"
    assert k.event_key(42, "ctl1") == b"/corral/cloud1/events/00000000000000000042-ctl1"
    assert k.event_prefix() == b"/corral/cloud1/events/"
    assert k.relative(k.status("ctl1", "web")) == ["status", "ctl1", "web"]
    assert k.galera("db") == k.prefix("galera") + b"db/" == b"/corral/cloud1/galera/db/"
    assert k.galera_report("db", "ctl1") == b"/corral/cloud1/galera/db/report/ctl1"
    assert k.galera_reports("db") == b"/corral/cloud1/galera/db/report/"
    assert k.galera_bootstrap("db") == b"/corral/cloud1/galera/db/bootstrap"
    assert k.galera_writer("db") == b"/corral/cloud1/galera/db/writer"


def test_event_keys_sort_in_time_order() -> None:
    k = Keys("c")
    times = [5, 40, 300, 10**18]
    assert sorted(k.event_key(t, "n") for t in times) == [k.event_key(t, "n") for t in times]


@pytest.mark.parametrize(
    "bad", ["", "a/b", "..", ".hidden", "-x", "x" * 64, "sp ace", "é", "a\x00"]
)
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="store key"):
        Keys(bad)
    with pytest.raises(ValueError):
        Keys("c").status("n1", bad)
    with pytest.raises(ValueError):
        Keys("c").admin("maintenance", bad)


def test_misuse() -> None:
    k = Keys("c")
    with pytest.raises(ValueError):
        k.prefix("secrets")
    with pytest.raises(ValueError):
        k.admin()
    with pytest.raises(ValueError):
        k.event_key(-1, "n")
    with pytest.raises(ValueError):
        k.relative(b"/corral/other/spec")
    assert Keys("c").node("a-b_c.1") == b"/corral/c/nodes/a-b_c.1"
