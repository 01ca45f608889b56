"""One parser for instance references: RES, RES[ITEM], RES@NODE, RES[ITEM]@NODE."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.instances import instance_key, split_key
from corral.core.ref import InstanceRef

NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}", fullmatch=True)
ITEMS = st.one_of(st.none(), st.from_regex(r"[0-9a-f:.]{1,39}", fullmatch=True))


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("web@n1", InstanceRef("web", None, "n1")),
        ("api-vips[198.18.0.100]@ctl1", InstanceRef("api-vips", "198.18.0.100", "ctl1")),
        ("api-vips[2001:db8::1]@ctl1", InstanceRef("api-vips", "2001:db8::1", "ctl1")),
    ],
)
def test_references_parse(text: str, ref: InstanceRef) -> None:
    assert InstanceRef.parse(text) == ref and str(ref) == text


@pytest.mark.parametrize(
    "text", ["web", "web@", "@n1", "Web@n1", "web@n1@n2", "a[b@n1", "a[]@n1", 7, None, "web @n1"]
)
def test_what_is_not_a_reference_to_an_instance_on_a_node(text: object) -> None:
    assert InstanceRef.parse(text) is None


def test_a_local_key_names_no_node() -> None:
    assert InstanceRef.parse("api-vips[198.18.0.100]", node=False) == InstanceRef(
        "api-vips", "198.18.0.100"
    )
    assert split_key("odd name") == ("odd name", None)  # never fails: the key as it is


@given(NAMES, ITEMS, NAMES)
def test_round_trips(resource: str, item: str | None, node: str) -> None:
    ref = InstanceRef(resource, item or None, node)
    assert InstanceRef.parse(str(ref)) == ref
    assert split_key(instance_key(resource, item or None)) == (resource, item or None)


@pytest.mark.parametrize("bad", ["keystone", "keystone@nowhere", "api-vips[198.18.0.100]@ctl1"])
def test_the_cli_refuses_what_is_not_resource_at_node(bad: str) -> None:
    from click.testing import CliRunner

    from corral.cli.main import cli

    spec = "examples/openstack.yaml"
    for argv in (["cleanup", bad, "--spec", spec], ["simulate", spec, "--fail-resource", bad]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert "write RESOURCE@NODE with names from the spec" in result.output
