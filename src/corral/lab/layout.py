"""The lab's layout, planned before anything is made (pure): names, addresses, sysctls.

See :mod:`corral.lab.lab` for what the names mean. Nothing here touches the system.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.spec import Spec

Addr = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says why (and shows agent logs)."""


def lab_id(lab_dir: Path) -> str:
    return hashlib.sha1(str(lab_dir.resolve()).encode()).hexdigest()[:6]


def ns_prefix(lab_dir: Path) -> str:
    """Every namespace of the lab in ``lab_dir`` starts with this."""
    return f"crl-{lab_id(lab_dir)}-"


# --- pure planning -------------------------------------------------------------------------


def node_prefixlen(spec: Spec, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The prefix length of the first VIP subnet of ``spec`` holding ``address``, else 24."""
    for res in spec.resources.values():
        vips = [res.vip.address] if res.vip else list(res.vip_set.addresses) if res.vip_set else []
        for vip in vips:
            if address in vip.network:
                return vip.network.prefixlen
    return 24 if address.version == 4 else 64


def client_addresses(node_cidrs: list[Addr], used: set[str]) -> list[Addr]:
    """One client address per distinct node subnet: ``.250`` when the subnet has it free,
    else its highest free usable address. Raises LabError when a subnet has none free."""
    out: list[Addr] = []
    for net in dict.fromkeys(c.network for c in node_cidrs):
        taken = used | {str(c.ip) for c in node_cidrs}
        hosts = [net.network_address + 250] if net.num_addresses > 252 else []
        last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
        hosts += [last - i for i in range(min(256, net.num_addresses - 2))]
        pick = next((h for h in hosts if h in net and str(h) not in taken), None)
        if pick is None:
            raise LabError(f"no free address for the client in {net}")
        out.append(ipaddress.ip_interface(f"{pick}/{net.prefixlen}"))
    return out


def _vip_addresses(spec: Spec) -> set[str]:
    found = set()
    for res in spec.resources.values():
        vips = [res.vip.address] if res.vip else list(res.vip_set.addresses) if res.vip_set else []
        found |= {str(v.ip) for v in vips}
    return found


def plan(
    spec: Spec, lab_dir: Path, spec_path: Path, data_dir: Path | None = None
) -> dict[str, Any]:
    """The state record of a lab for ``spec`` (nodes already cut to the lab's), nothing made.
    Each node's state dir (agent state, its etcd member's data, ``agent.log``) is
    ``<data_dir>/nodes/<node>``, ``data_dir`` defaulting to ``lab_dir``."""
    ident = lab_id(lab_dir)
    base = data_dir or lab_dir
    pre = f"crl-{ident}-"
    nodes: dict[str, Any] = {}
    cidrs: list[Addr] = []
    for i, (name, node) in enumerate(spec.nodes.items()):
        cidr = ipaddress.ip_interface(f"{node.address}/{node_prefixlen(spec, node.address)}")
        cidrs.append(cidr)
        nodes[name] = {
            "ns": f"{pre}node-{name}",
            "ifname": f"crl{ident}n{i}",
            "switch_if": f"crl{ident}s{i}",
            "address": str(cidr),
            "state_dir": str(base / "nodes" / name),
            "powered": False,
            "agent_pid": None,
        }
    client = client_addresses(cidrs, _vip_addresses(spec))
    return {
        "version": 1,
        "id": ident,
        "cluster": spec.cluster,
        "dir": str(lab_dir),
        "data_dir": None if data_dir is None else str(data_dir),
        "spec": str(spec_path),
        "switch_ns": f"{pre}switch",
        "bridge": f"crlbr-{ident}",
        "client": {
            "ns": f"{pre}client",
            "ifname": f"crl{ident}nc",
            "switch_if": f"crl{ident}sc",
            "addresses": [str(c) for c in client],
        },
        "nodes": nodes,
        "ipv6": any(c.version == 6 for c in cidrs),
        "created": time.time(),
    }


def node_sysctls(ipv6: bool) -> dict[str, str]:
    values = {
        "net.ipv4.ip_nonlocal_bind": "1",
        "net.ipv4.conf.all.arp_ignore": "1",
        "net.ipv4.conf.all.arp_announce": "2",
    }
    if not ipv6:
        values["net.ipv6.conf.all.disable_ipv6"] = "1"
        values["net.ipv6.conf.default.disable_ipv6"] = "1"
    return values
