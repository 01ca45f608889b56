"""The rotation's decisions (``corral.core.keyrot``): phase, next write, who must answer."""

from __future__ import annotations

from corral.core.keyrot import (
    LEFT_IN,
    Rotation,
    laggards,
    next_step,
    phase,
    required,
    stopped_text,
)

OLD, NEW, FRESH = "old0", "new1", "fresh2"


def test_a_rotation_walks_add_use_remove_finish_from_what_the_store_says() -> None:
    keys: tuple[str, ...] = (OLD,)
    rotation: Rotation | None = None
    seen = []
    for _ in range(4):
        step = next_step(keys, rotation, NEW)
        seen.append((step.action, step.keys))
        keys, rotation = step.keys, step.rotation
    assert seen == [
        ("add", (OLD, NEW)),  # accepted only: everyone still sends with OLD
        ("use", (NEW, OLD)),
        ("remove", (NEW,)),
        ("finish", (NEW,)),
    ]
    assert rotation == Rotation(NEW, (OLD,), finished=True)
    assert phase(keys, rotation) == ("idle", "")
    # the next run starts a new rotation, from the new key
    assert next_step(keys, rotation, FRESH).keys == (NEW, FRESH)


def test_a_resumed_run_goes_on_from_the_phase_it_reads_not_backwards() -> None:
    rotation = Rotation(NEW, (OLD,))
    # [NEW, OLD] is the switch toward NEW: the next write retires OLD (never NEW)
    assert phase((NEW, OLD), rotation) == ("switched", "")
    assert next_step((NEW, OLD), rotation, FRESH).keys == (NEW,)
    # the same keyring read the other way round is a rotation toward OLD
    back = Rotation(OLD, (NEW,))
    assert next_step((NEW, OLD), back, FRESH).keys == (OLD, NEW)
    assert phase((NEW,), rotation) == ("retired", "")
    assert next_step((NEW,), rotation, FRESH).action == "finish"


def test_every_old_key_goes_and_a_hand_edited_keyring_is_refused() -> None:
    step = next_step(("a", "b"), None, NEW)  # two keys already: both are retired
    assert step.keys == ("a", "b", NEW) and step.rotation == Rotation(NEW, ("a", "b"))
    assert next_step(("a", "b", NEW), step.rotation, FRESH).keys == (NEW, "a", "b")
    broken = next_step((OLD,), Rotation(NEW, (OLD,)), FRESH)
    assert broken.action == "refuse" and "no longer holds" in broken.why
    assert next_step((OLD, FRESH), None, FRESH).action == "refuse"


def test_registered_nodes_and_every_live_gossip_member_must_answer() -> None:
    views = {
        "n1": [("n1", "alive"), ("n2", "suspect"), ("n3", "dead"), ("n4", "alive")],
        "n2": [("n5", "left")],
    }
    # n4 gossips without a registration (cut off from the store): it cannot follow the
    # keyring, so it holds the rotation; dead and left members do not
    assert required({"n1", "n2"}, views) == {"n1", "n2", "n4"}
    acks = {"n1": 12, "n2": 11}
    assert laggards(12, acks, {"n1", "n2", "n4"}) == ["n2", "n4"]
    assert laggards(11, acks, {"n1", "n2"}) == []


def test_a_stop_names_the_node_and_says_everyone_still_talks() -> None:
    for now in ("added", "switched", "retired"):
        text = stopped_text(now, ["n3"], 42, 5.0)
        assert text.startswith("n3 did not apply keyring revision 42 within 5s")
        assert "everyone talks" in text and "again" in text
    assert LEFT_IN["idle"] == "nothing was changed"
