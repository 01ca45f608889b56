"""The derived ``evs.*`` timeouts (:mod:`corral.core.galera.evs`): Galera's constraints hold
for every profile and for any consistent timing, and the options string reads as Galera's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.galera.evs import (
    EvsTimeouts,
    clear_option,
    evict_option,
    evictions,
    evictions_over,
    evs_timeouts,
    iso,
    provider_options,
    violations,
)
from corral.spec.profiles import Timing, profile_timing


@pytest.mark.parametrize("profile", ["local", "lan", "wan"])
def test_galera_accepts_the_timeouts_of_every_profile(profile: str) -> None:
    timing = profile_timing(profile)  # type: ignore[arg-type]
    got = evs_timeouts(timing)
    assert violations(got) == []
    # Galera suspects no sooner than corral's own self-fence point, and not later
    assert got.suspect_timeout == max(1.0, timing.lease_ttl - timing.safety_margin)
    assert got.suspect_timeout + got.inactive_check_period <= timing.lease_ttl


def test_the_lan_figures() -> None:
    lan = EvsTimeouts(2.25, 0.225, 0.45, 6.75, 3.375, 0.225)
    assert evs_timeouts(profile_timing("lan")) == lan
    assert provider_options(profile_timing("lan")) == (
        "evs.suspect_timeout=PT2.25S;evs.inactive_check_period=PT0.225S;"
        "evs.keepalive_period=PT0.45S;evs.inactive_timeout=PT6.75S;evs.install_timeout=PT3.375S;"
        "evs.join_retrans_period=PT0.225S"
    )
    assert evs_timeouts(profile_timing("wan")).suspect_timeout == 9.0
    assert evs_timeouts(profile_timing("local")).suspect_timeout == 1.5


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 120), st.floats(0.0, 0.9))
def test_any_lease_and_margin_give_valid_timeouts(lease: int, share: float) -> None:
    timing = Timing(
        etcd_heartbeat=0.05,
        etcd_election=0.5,
        lease_ttl=float(lease),
        keepalive_interval=lease / 5,
        safety_margin=lease * share,
    )
    assert violations(evs_timeouts(timing)) == []


def test_violations_name_the_broken_rule() -> None:
    bad = EvsTimeouts(2.0, 1.5, 1.0, 1.0, 5.0)
    said = "\n".join(violations(bad))
    assert "evs.inactive_timeout >= evs.suspect_timeout" in said
    assert "evs.inactive_check_period <= evs.suspect_timeout / 2" in said
    assert "evs.keepalive_period <= evs.suspect_timeout / 3" in said
    assert "evs.install_timeout <= evs.inactive_timeout" in said
    assert "evs.join_retrans_period >= 0.1 s" in "\n".join(
        violations(EvsTimeouts(2.25, 0.225, 0.45, 6.75, 3.375, 0.05))
    )


def test_extra_options_and_bad_entries() -> None:
    got = provider_options(profile_timing("lan"), {"gcache.size": "128M"})
    assert got.endswith(";gcache.size=128M")
    with pytest.raises(ValueError, match="no ';'"):
        provider_options(profile_timing("lan"), {"gcache.size": "1M;pc.ignore_sb=true"})


def test_iso_durations() -> None:
    assert (iso(2.25), iso(9.0), iso(0.1), iso(1 / 3)) == ("PT2.25S", "PT9S", "PT0.1S", "PT0.333S")


def test_evict_takes_a_gcomm_uuid_only() -> None:
    uuid = "0dae1307-1605-11e4-aa3d-ab44303c044a"
    assert evict_option(uuid) == f"evs.evict={uuid}"
    for bad in ("", "ctl1", uuid + ";pc.bootstrap=1", uuid.upper()):
        with pytest.raises(ValueError, match="not a gcomm UUID"):
            evict_option(bad)


UUIDS = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(4)]


def test_a_survivor_evicts_the_fenced_members_of_its_view_once_and_never_itself() -> None:
    view = list(zip(UUIDS, ("db1", "db2", "db3", "db4"), strict=True))
    assert evictions(view, {"db3"}, "db1") == [("db3", UUIDS[2])]
    assert evictions(view, {"db3", "db1"}, "db1") == [("db3", UUIDS[2])]  # never itself
    assert evictions(view, {"db3"}, "db1", done={UUIDS[2]}) == []  # once is enough
    assert evictions(view, set(), "db1") == []  # nothing fenced: nothing evicted
    assert evictions([("not-a-uuid", "db3")], {"db3"}, "db1") == []  # never sent


@settings(max_examples=200, deadline=None)
@given(
    view=st.lists(
        st.tuples(st.sampled_from([*UUIDS, "x"]), st.sampled_from(["db1", "db2", "db3"]))
    ),
    gone=st.sets(st.sampled_from(["db1", "db2", "db3"])),
    me=st.sampled_from(["db1", "db2", "db3"]),
    done=st.sets(st.sampled_from(UUIDS)),
)
def test_only_fenced_members_are_evicted(
    view: list[tuple[str, str]], gone: set[str], me: str, done: set[str]
) -> None:
    got = evictions(view, gone, me, done)
    assert all(n in gone and n != me and u not in done and u in UUIDS for n, u in got)
    assert [(n, u) for u, n in view if (n, u) in got] == got  # view order, nothing made up


def test_the_evict_list_is_emptied_only_once_every_fenced_node_is_back() -> None:
    """Rule 2: evicted uuids stay listed while any node is gone (fenced, not registered
    again); once none is (rebooted: new servers, new uuids) the list empties."""
    assert not evictions_over([], set())  # nothing listed: nothing to do
    assert not evictions_over(["u3"], {"db3"})
    assert not evictions_over(["u3", "u2"], {"db2"})  # one still gone: the list stays whole
    assert evictions_over(["u3"], set())
    assert clear_option() == "evs.evict="
