"""The controller's ``node`` events (:func:`corral.core.controller.node_events`): one per
change of a node's state between two steps of one controller, in Pacemaker's words."""

from __future__ import annotations

from corral.core.controller import node_events

THREE = {"ctl1": "online", "ctl2": "online", "ctl3": "online"}


def test_a_new_controller_says_nothing_on_its_first_step() -> None:
    assert node_events(None, THREE | {"ctl2": "unclean"}) == []


def test_lost_when_an_online_node_goes_and_member_when_it_is_back() -> None:
    unclean = THREE | {"ctl2": "unclean"}
    assert [(n, w.split(":")[0]) for n, w in node_events(THREE, unclean)] == [("ctl2", "lost")]
    offline = THREE | {"ctl2": "offline"}
    assert node_events(unclean, offline) == []  # fenced or expired: the fence event says it
    assert [(n, w.split(":")[0]) for n, w in node_events(offline, THREE)] == [("ctl2", "member")]
    assert [w.split(":")[0] for _, w in node_events(THREE, offline)] == ["lost"]  # at once


def test_no_change_no_event_and_a_node_new_to_the_spec_is_not_news() -> None:
    assert node_events(THREE, THREE) == []
    assert node_events({"ctl1": "online"}, THREE) == []
