"""OCF meta-data parsing and parameter checks (pure), plus every installed heartbeat agent."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.drivers.ocf import DEFAULT_OCF_ROOT
from corral.drivers.ocf_meta import check_params, parse_duration, parse_metadata

META = """<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="demo" version="1.0">
<parameters>
<parameter name="ip" required="1" unique="1"><content type="string"/></parameter>
<parameter name="port" required="true"><content type="integer" default="80"/></parameter>
<parameter name="opt"><content type="boolean" default="false"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="monitor" timeout="20" interval="10s" depth="0"/>
<action name="monitor" timeout="2min" interval="11s" role="Promoted"/>
<action name="promote" timeout="500ms"/>
<action name="demote"/>
</actions>
</resource-agent>
"""


def test_parse_metadata() -> None:
    meta = parse_metadata(META)
    assert meta.agent == "demo"
    assert sorted(meta.parameters) == ["ip", "opt", "port"]
    assert meta.parameters["ip"].required and meta.parameters["ip"].unique
    assert meta.parameters["port"].required and meta.parameters["port"].default == "80"
    assert not meta.parameters["opt"].required and meta.parameters["opt"].type == "boolean"
    assert meta.timeouts == {"start": 20.0, "monitor": 120.0, "promote": 0.5}
    assert meta.actions == {"start", "monitor", "promote", "demote"} and meta.promotable


def test_check_params_reports_every_problem_at_once() -> None:
    meta = parse_metadata(META)
    assert check_params(meta, {"ip": "10.0.0.1", "port": "81"}) == []
    problems = check_params(meta, {"ip": "", "colour": "x", "size": "2"})
    assert problems == [
        "unknown parameter(s) colour, size (the agent takes: ip, opt, port)",
        "missing required parameter(s) ip, port",  # required even with a default; "" is missing
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20),
        ("20", 20),
        ("2min", 120),
        ("2m", 120),
        ("1h", 3600),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        (" 30 sec ", 30),
        ("250000us", 0.25),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10 parsecs", "-1s", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not xml at all <", "not XML"),
        ("<html/>", "not <resource-agent>"),
        (
            "<resource-agent><parameters><parameter/></parameters></resource-agent>",
            "without a name",
        ),
        (
            "<resource-agent><actions><action name='start' timeout='soon'/></actions></resource-agent>",
            "not a duration",
        ),
    ],
)
def test_bad_metadata(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_metadata(text)


@given(st.text(max_size=200))
def test_parse_metadata_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_metadata(text)


HEARTBEAT = DEFAULT_OCF_ROOT / "resource.d" / "heartbeat"


@pytest.mark.skipif(not HEARTBEAT.exists(), reason="Debian package 'resource-agents' missing")
def test_installed_heartbeat_agents_meta_data_parses() -> None:
    """The parser copes with the real corpus, not only with the agents the tests run.

    Every fifth agent (about 28 of 140, a fixed sample): all of them take 6 s, mostly in the
    Python-based cloud agents, and the machine is shared.
    """
    agents = sorted(p for p in HEARTBEAT.iterdir() if p.is_file() and not p.name.startswith("."))
    assert len(agents) > 50
    agents = agents[::5]
    failures = {}
    env = {"OCF_ROOT": str(DEFAULT_OCF_ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    script = 'for a in "$@"; do printf "\\0%s\\0" "$a"; timeout 5 "$a" meta-data 2>/dev/null; done'
    out = subprocess.run(
        ["sh", "-c", script, "sh", *map(str, agents)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    parts = out.split("\0")[1:]
    for name, text in zip(parts[0::2], parts[1::2], strict=True):
        try:
            meta = parse_metadata(text)
        except ValueError as exc:
            failures[name] = str(exc)
            continue
        assert {"start", "stop", "monitor"} <= meta.actions, name
    assert not failures
