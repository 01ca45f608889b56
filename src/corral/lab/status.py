"""``corral lab status``: what a lab made and how it is now, read from its state and the kernel.

Contract: reads only (``ip`` and ``/proc``); a namespace that is gone shows as ``None``.
"""

from __future__ import annotations

from typing import Any

from corral.lab import netns


def lab_status(state: dict[str, Any]) -> dict[str, Any]:
    """Per node: power (recorded), link states of both ends, addresses, netem, the agent pid
    (and whether it lives), processes in the namespace; the switch, the client, the notes."""
    sw = state["switch_ns"]
    nodes = {}
    for name, n in state["nodes"].items():
        pid = n["agent_pid"]
        nodes[name] = {
            "namespace": n["ns"] if netns.exists(n["ns"]) else None,
            "powered": n["powered"],
            "link": netns.link_state(n["ns"], n["ifname"]),
            "switch_port": netns.link_state(sw, n["switch_if"]),
            "addresses": netns.addresses(n["ns"], n["ifname"]),
            "netem": netns.netem_of(n["ns"], n["ifname"]),
            "agent_pid": pid,
            "agent_alive": pid is not None and pid in netns.pids(n["ns"]),
            "processes": len(netns.pids(n["ns"])),
        }
    return {
        "id": state["id"],
        "cluster": state["cluster"],
        "dir": state["dir"],
        "data_dir": state.get("data_dir"),
        "spec": state["spec"],
        "switch": {"namespace": sw, "bridge": state["bridge"], "exists": netns.exists(sw)},
        "client": {"namespace": state["client"]["ns"], **state["client"]},
        "nodes": nodes,
        "notes": state.get("notes", []),
    }
