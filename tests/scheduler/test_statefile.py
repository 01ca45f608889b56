"""The state file of ``corral simulate``: every unknown name is reported with its place in the
file, and a good file gives the snapshot it describes."""

from __future__ import annotations

import pytest

from corral.core.scheduler import load_state_text
from corral.spec import SpecError, load_spec_text

SPEC = load_spec_text(
    "cluster: s\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2}\n  n3: {address: 198.18.0.3}\n"
    "resources:\n  web: {process: /bin/web}\n  vips: {vip-set: [198.18.0.100/24]}\n"
)


def test_a_good_state_file_reads_back() -> None:
    snap = load_state_text(
        """
nodes: {n2: {state: unclean, standby: true}}
instances: {web@n1: started, 'vips[198.18.0.100]@n2': started}
failures: {web@n2: {count: 2, last: 5}}
maintenance: {nodes: [n1], resources: [web], instances: [web@n2]}
bans: [web@n1]
moves: {web: n2}
""",
        SPEC,
        "state.yaml",
    )
    assert snap.node("n2").state == "unclean" and snap.node("n2").standby
    assert {(i.resource, i.node, i.item) for i in snap.instances} == {
        ("web", "n1", None),
        ("vips", "n2", "198.18.0.100"),
    }
    assert snap.failures[("web", "n2")].count == 2
    assert snap.maintenance.nodes == {"n1"} and snap.maintenance.instances == {("web", "n2")}
    assert snap.bans == {("web", "n1")} and snap.moves == {"web": "n2"}


def test_every_unknown_name_is_reported_where_it_is() -> None:
    text = """
nodes: {n9: {state: online}}
instances: {web@n7: started, ghost@n1: started, nonsense: started}
failures: {web@n8: {count: 1, last: 0}}
maintenance: {nodes: [n6], resources: [phantom]}
moves: {web: n5}
wait_for_all: [spirit]
"""
    with pytest.raises(SpecError) as caught:
        load_state_text(text, SPEC, "state.yaml")
    found = "\n".join(str(i) for i in caught.value.issues)
    for needle in (
        "unknown node 'n9'",
        "unknown node 'n7'",
        "unknown resource 'ghost'",
        "'nonsense': write RESOURCE@NODE",
        "unknown node 'n8'",
        "unknown node 'n6'",
        "unknown resource 'phantom'",
        "unknown node 'n5'",
        "unknown resource 'spirit'",
    ):
        assert needle in found, (needle, found)
    assert "state.yaml:" in found  # with its place in the file
