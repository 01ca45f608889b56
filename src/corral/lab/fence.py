"""The lab fence device: ``python -m corral.lab.fence`` speaks the fence-agents protocol.

The same calling code drives ``fence_ipmilan`` in production, so this follows fence-agents'
``fencing.py`` conventions:

- Input: ``name=value`` lines on stdin (blank lines and ``#`` comments skipped); ``--name=value``
  arguments are accepted too and win over stdin. ``action`` (old alias ``option``) defaults to
  ``reboot``; ``plug`` (alias ``port``) names the node; ``lab_dir`` finds the lab. Other names
  (``nodename``, credentials) are ignored with a note on stderr, as fence-agents do.
- Actions: ``off`` (the lab's ``power_off``), ``on`` (``power_on``), ``reboot`` (off, then on),
  ``status`` (prints ``Status: ON|OFF``), ``monitor`` (the device, i.e. the lab, answers),
  ``list`` (one ``plug,alias`` line per node), ``metadata`` (XML), ``validate-all``.
- Exit codes: 0 success; ``status`` exits 0 when on and 2 when off; 1 for every failure (unknown
  action, missing or unknown plug, no lab), with a ``Failed: ...`` line on stderr.
- ``off`` on a node that is off and ``on`` on a node that is on succeed (idempotent).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

EC_OK = 0
EC_GENERIC_ERROR = 1
EC_STATUS_OFF = 2
ACTIONS = ("on", "off", "reboot", "status", "monitor", "list", "metadata", "validate-all")
NEEDS_PLUG = ("on", "off", "reboot", "status")
KNOWN = {"action", "option", "plug", "port", "lab_dir"}

METADATA = """<?xml version="1.0" ?>
<resource-agent name="fence_lab" shortdesc="Fence agent for the corral network-namespace lab">
<longdesc>Powers lab nodes off (SIGKILL of every process in the node's namespace, link down,
VIPs removed) and on (link up, agent started).</longdesc>
<parameters>
  <parameter name="action" unique="0" required="1"><getopt mixed="--action=[action]"/>
    <content type="string" default="reboot"/><shortdesc lang="en">Fencing action</shortdesc>
  </parameter>
  <parameter name="plug" unique="0" required="1" obsoletes="port">
    <getopt mixed="--plug=[node]"/><content type="string"/>
    <shortdesc lang="en">Lab node name</shortdesc>
  </parameter>
  <parameter name="lab_dir" unique="0" required="1"><getopt mixed="--lab-dir=[dir]"/>
    <content type="string"/><shortdesc lang="en">The lab directory</shortdesc>
  </parameter>
</parameters>
<actions>
  <action name="on" automatic="0"/><action name="off"/><action name="reboot"/>
  <action name="status"/><action name="list"/><action name="monitor"/>
  <action name="metadata"/><action name="validate-all"/>
</actions>
</resource-agent>
"""


class FenceError(Exception):
    """A request that cannot be carried out; ``str()`` is the ``Failed: ...`` message."""


@dataclass(frozen=True)
class Request:
    action: str
    plug: str | None
    lab_dir: str | None
    notes: list[str] = field(default_factory=list)  # ignored input, for stderr


def parse_request(stdin: str, argv: Sequence[str] = ()) -> Request:
    """The request in ``stdin`` lines and ``--name=value`` arguments (pure).
    Raises FenceError for an unknown action or a missing plug or lab_dir."""
    values: dict[str, str] = {}
    notes = []
    lines = [line.strip() for line in stdin.splitlines()]
    lines += [a[2:] for a in argv if a.startswith("--")]
    for line in lines:
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            notes.append(f"Parse error: Ignoring line without '=': {line!r}")
            continue
        if name not in KNOWN:
            notes.append(f"Parse error: Ignoring unknown option '{name}'")
            continue
        values[{"option": "action", "port": "plug"}.get(name, name)] = value.strip()
    action = values.get("action", "reboot")
    if action not in ACTIONS:
        raise FenceError(f"Failed: Unrecognised action '{action}'")
    plug = values.get("plug") or None
    if action in NEEDS_PLUG and plug is None:
        raise FenceError("Failed: You have to enter plug number or machine identification")
    lab_dir = values.get("lab_dir") or None
    if action not in ("metadata",) and lab_dir is None:
        raise FenceError("Failed: You have to set lab_dir (the lab directory)")
    return Request(action, plug, lab_dir, notes)


def execute(req: Request) -> tuple[int, str]:
    """Carry out ``req`` on the lab; return (exit code, stdout text)."""
    from corral.lab.lab import Lab, LabError
    from corral.lab.netns import NetnsError

    if req.action == "metadata":
        return EC_OK, METADATA
    assert req.lab_dir is not None
    lab = Lab(Path(req.lab_dir))
    try:
        nodes = lab.state()["nodes"]
    except LabError as exc:
        raise FenceError(f"Failed: Unable to connect/login to fencing device: {exc}") from None
    if req.action in ("monitor", "validate-all"):
        return EC_OK, ""
    if req.action == "list":
        return EC_OK, "".join(f"{name},\n" for name in nodes)
    if req.plug is None or req.plug not in nodes:
        raise FenceError(
            "Failed: Unable to obtain correct plug status or plug is not available "
            f"({req.plug!r} is not a node of the lab: {', '.join(nodes)})"
        )
    plug = req.plug
    if req.action == "status":
        on = bool(nodes[plug]["powered"])
        return (EC_OK if on else EC_STATUS_OFF), f"Status: {'ON' if on else 'OFF'}\n"
    try:
        if req.action in ("off", "reboot"):
            lab.power_off(plug)
        if req.action in ("on", "reboot"):
            lab.power_on(plug)
    except (LabError, NetnsError, OSError) as exc:
        raise FenceError(f"Failed: {req.action} {plug}: {exc}") from None
    done = {"off": "Powered OFF", "on": "Powered ON", "reboot": "Rebooted"}[req.action]
    return EC_OK, f"Success: {done}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    try:
        req = parse_request(stdin, args)
        for note in req.notes:
            print(note, file=sys.stderr)
        code, out = execute(req)
    except FenceError as exc:
        print(str(exc), file=sys.stderr)
        return EC_GENERIC_ERROR
    sys.stdout.write(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
