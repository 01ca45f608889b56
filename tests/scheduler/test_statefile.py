"""The state file of ``corral simulate``: every unknown name is reported with its place in the
file, and a good file gives the snapshot it describes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from corral.core.scheduler import NodeStatus, dump_state_text, load_state_text
from corral.spec import SpecError, load_spec, load_spec_text
from tests.scheduler.golden import CASES, spec_path

CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "input.yaml").exists())

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


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_every_golden_state_dumps_and_reads_back_the_same(case_dir: Path) -> None:
    """``corral state dump`` and the controller's input log write what ``corral simulate``
    and the golden cases read: every golden case's state survives the round trip."""
    body = yaml.safe_load((case_dir / "input.yaml").read_text())
    spec = load_spec(spec_path(body["spec"]))
    snap = load_state_text(yaml.safe_dump(body.get("state") or {}), spec, "in.yaml")
    text = dump_state_text(snap, header="dumped")
    assert text.startswith("# dumped\n")
    again = load_state_text(text, spec, "out.yaml")
    assert again == replace(snap, nodes={n: s for n, s in snap.nodes.items() if s != NodeStatus()})
