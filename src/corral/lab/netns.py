"""Thin wrappers over ``ip`` and ``tc`` for the lab: namespaces, a bridge, veth pairs,
addresses, sysctls, netem, link state, and killing every process of a namespace.

Why ``ip``/``tc`` and not pyroute2: no new dependency; the commands are the ones an operator
types to inspect the lab (``ip -n crl-... addr``), so a failure message is a command line anyone
can rerun; and starting a process inside a namespace needs ``ip netns exec`` anyway (Python 3.11
has no ``os.setns``). The cost, a fork per call, is a few milliseconds, paid at setup and at
fault injection only.

Contract:
- Every function takes the namespace it acts in; nothing here touches the root namespace's
  links or addresses (a veth pair is created inside one lab namespace with its peer moved
  straight into another).
- A command that fails raises :class:`NetnsError` with the command line and ``ip``'s stderr,
  except where a function documents that a missing object is fine (deletes, pid listing).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

IP = "ip"
TC = "tc"


class NetnsError(RuntimeError):
    """An ``ip``/``tc`` command failed; the message holds the command line and its stderr."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 10.0) -> str:
    """Run ``argv``; return its stdout. ``check``: raise NetnsError on a non-zero exit."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


# --- namespaces ----------------------------------------------------------------------------


def list_namespaces(prefix: str = "") -> list[str]:
    """Names of the network namespaces under /run/netns that start with ``prefix``."""
    out = run([IP, "-json", "netns", "list"], check=False).strip()
    names = [entry["name"] for entry in json.loads(out or "[]")]
    return sorted(n for n in names if n.startswith(prefix))


def exists(ns: str) -> bool:
    return ns in list_namespaces(ns)


def add_namespace(ns: str) -> None:
    """Create ``ns`` with its loopback up."""
    run([IP, "netns", "add", ns])
    run([IP, "-n", ns, "link", "set", "lo", "up"])


def delete_namespace(ns: str) -> None:
    """Delete ``ns`` (its veth ends go with it, and so do their peers); a missing one is fine."""
    if exists(ns):
        run([IP, "netns", "del", ns])


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``ns`` (``ip netns exec`` execs, so the pid
    of the spawned process is the pid of ``argv`` itself)."""
    return [IP, "netns", "exec", ns, *argv]


def sysctl(ns: str, values: dict[str, str]) -> None:
    """Set per-namespace sysctls (``net.ipv4.*`` are per network namespace)."""
    if values:
        run(exec_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]))


# --- processes -----------------------------------------------------------------------------


def pids(ns: str) -> list[int]:
    """Pids of the live processes in ``ns`` (none when the namespace does not exist)."""
    out = run([IP, "netns", "pids", ns], check=False)
    return sorted(int(p) for p in out.split() if p.isdigit())


def kill_all(ns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in ``ns`` until none is left (a dying agent may still fork);
    return the pids killed. Raises NetnsError if processes survive ``timeout`` seconds."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids(ns) if p != os.getpid()]
        if not alive:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise NetnsError(f"{ns}: processes {alive} survive SIGKILL")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        _reap(alive)
        time.sleep(0.02)


def _reap(candidates: Sequence[int]) -> None:
    """Collect our own children among ``candidates`` so they do not linger as zombies."""
    for pid in candidates:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# --- links ---------------------------------------------------------------------------------


def add_bridge(ns: str, name: str) -> None:
    """A bridge without STP (ports forward at once) and without multicast snooping."""
    run([IP, "-n", ns, "link", "add", name, "type", "bridge", "stp_state", "0"])
    run([IP, "-n", ns, "link", "set", name, "type", "bridge", "mcast_snooping", "0"])
    run([IP, "-n", ns, "link", "set", name, "up"])


def add_veth(ns: str, name: str, peer_ns: str, peer: str, bridge: str) -> None:
    """A veth pair: ``name`` in ``ns`` enslaved to ``bridge`` and up, ``peer`` in ``peer_ns``
    (left down: the caller addresses it first)."""
    run([IP, "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns])
    run([IP, "-n", ns, "link", "set", name, "master", bridge])
    set_link(ns, name, up=True)


def add_star(switch: str, bridge: str, hosts: Mapping[str, tuple[str, str, str]]) -> None:
    """A switch namespace ``switch`` with ``bridge``, and each host namespace of ``hosts``
    (made here) wired to it by a veth: ``hosts`` maps a namespace to (the port's name on the
    switch, the interface's name in the host, its address as ``addr/prefix``); the host's
    interface is addressed and up."""
    add_namespace(switch)
    add_bridge(switch, bridge)
    for ns, (port, ifname, cidr) in hosts.items():
        add_namespace(ns)
        add_veth(switch, port, ns, ifname, bridge)
        add_address(ns, ifname, cidr)
        set_link(ns, ifname, up=True)


def remove_all(namespaces: Sequence[str], timeout: float = 5.0) -> None:
    """Kill every process left in each of ``namespaces`` and delete them (missing ones are
    fine). Only for namespaces the caller made: what runs there is the caller's."""
    for ns in namespaces:
        if exists(ns):
            with contextlib.suppress(NetnsError):
                kill_all(ns, timeout)
            delete_namespace(ns)


def set_link(ns: str, ifname: str, *, up: bool) -> None:
    run([IP, "-n", ns, "link", "set", ifname, "up" if up else "down"])


def link_state(ns: str, ifname: str) -> str:
    """``up`` (administratively up and carrier), ``no-carrier`` (up, peer down), ``down``,
    or ``missing``."""
    out = run([IP, "-json", "-n", ns, "link", "show", ifname], check=False).strip()
    if not out:
        return "missing"
    flags = json.loads(out)[0].get("flags", [])
    if "UP" not in flags:
        return "down"
    return "no-carrier" if "NO-CARRIER" in flags else "up"


def add_address(ns: str, ifname: str, cidr: str) -> None:
    run([IP, "-n", ns, "addr", "add", cidr, "dev", ifname])


def addresses(ns: str, ifname: str) -> list[str]:
    """The IPv4/IPv6 addresses of ``ifname`` as ``addr/prefix`` (link-local IPv6 left out)."""
    out = run([IP, "-json", "-n", ns, "addr", "show", "dev", ifname], check=False).strip()
    found = []
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") != "link":
                found.append(f"{a['local']}/{a['prefixlen']}")
    return found


def flush_addresses_except(ns: str, ifname: str, keep: str) -> list[str]:
    """Delete every address of ``ifname`` but ``keep`` (``addr/prefix``); return the deleted.
    Covers VIPs added in the node's subnet (kernel "secondary") and as /32 alike."""
    gone = [a for a in addresses(ns, ifname) if a != keep]
    for cidr in gone:
        run([IP, "-n", ns, "addr", "del", cidr, "dev", ifname], check=False)
    return gone


# --- netem ---------------------------------------------------------------------------------


def set_netem(ns: str, ifname: str, *, loss: float = 0.0, delay: float = 0.0) -> None:
    """Egress netem on ``ifname``: ``loss`` in percent, ``delay`` in seconds (replaces any)."""
    argv = [TC, "-n", ns, "qdisc", "replace", "dev", ifname, "root", "netem"]
    if delay > 0:
        argv += ["delay", f"{delay * 1000:g}ms"]
    if loss > 0:
        argv += ["loss", f"{loss:g}%"]
    try:
        run(argv)
    except NetnsError as exc:
        if "kind is unknown" in str(exc):  # kernels built without sch_netem (some VMs)
            raise NetnsError(f"this kernel has no netem qdisc (sch_netem): {exc}") from None
        raise


def netem_available() -> bool:
    """True when the kernel offers netem (probed on a throwaway namespace's loopback)."""
    ns = f"crl-probe-{os.getpid()}"
    add_namespace(ns)
    try:
        set_netem(ns, "lo")
    except NetnsError:
        return False
    else:
        return True
    finally:
        delete_namespace(ns)


def clear_netem(ns: str, ifname: str) -> None:
    """Back to the default qdisc; fine when there was no netem."""
    run([TC, "-n", ns, "qdisc", "del", "dev", ifname, "root"], check=False)


def netem_of(ns: str, ifname: str) -> str:
    """The netem options on ``ifname`` (``delay 50ms loss 10%``), or '' when there is none."""
    out = run([TC, "-n", ns, "qdisc", "show", "dev", ifname], check=False)
    for line in out.splitlines():
        words = line.split()
        if len(words) > 1 and words[1] == "netem":
            after = words.index("limit") + 2 if "limit" in words else 2
            return " ".join(words[after:])
    return ""


NFT = "nft"


def _nft_table(port: str) -> str:
    return f"crl_part_{port}".replace("-", "_")


def partition_port(ns: str, port: str, peers: Sequence[str]) -> None:
    """In the switch namespace ``ns``, drop every frame between bridge port ``port`` and the
    ports ``peers`` (an nftables bridge table of its own), in both directions. Frames to and
    from every other port (the client's) still pass: a partial partition, where the node still
    answers the client but cannot reach its peers. Replaces an earlier partition of ``port``."""
    heal_port(ns, port)
    table = _nft_table(port)
    others = ", ".join(f'"{p}"' for p in peers)
    script = (
        f"table bridge {table} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    iifname "{port}" oifname {{ {others} }} drop\n'
        f'    iifname {{ {others} }} oifname "{port}" drop\n'
        "  }\n"
        "}\n"
    )
    _nft_script(ns, script)


def _nft_script(ns: str, script: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, NFT, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        raise NetnsError(f"nft -f - (in {ns}) failed: {proc.stderr.strip()}")


def block_tcp_port(ns: str, name: str, tcp_port: int) -> None:
    """In the switch namespace ``ns``, drop every bridged TCP segment to or from ``tcp_port``
    (an nftables bridge table ``name`` of its own; every other frame passes). Replaces an
    earlier block of the same name."""
    unblock(ns, name)
    table = _nft_table(name)
    _nft_script(
        ns,
        f"table bridge {table} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"    tcp dport {tcp_port} drop\n"
        f"    tcp sport {tcp_port} drop\n"
        "  }\n"
        "}\n",
    )


def unblock(ns: str, name: str) -> None:
    """Remove the block ``name`` (none is fine)."""
    heal_port(ns, name)


def heal_port(ns: str, port: str) -> None:
    """Remove the partition of ``port`` (none is fine)."""
    run(
        ["ip", "netns", "exec", ns, NFT, "delete", "table", "bridge", _nft_table(port)], check=False
    )
