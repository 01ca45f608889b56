"""``corral init``: a starting spec for a real cluster, from the host's addresses and a few
flags, validated by the spec loader before it is written, never over an existing file.

The spec it writes runs the embedded store over TLS with corral's CA bundle at
``/etc/corral/ca`` (made by ``corral ca init``, copied to every node), names the nodes as the
unit expects them (``--node %l``: the short host name) and holds no resource yet: a commented
example shows where they go. :func:`starting_spec` is pure; the command does the I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import click
import psutil

from corral.spec import SpecError, load_spec_text
from corral.spec.errors import SpecIssue
from corral.spec.store import DEFAULT_BUNDLE

SPEC = Path("/etc/corral/spec.yaml")
PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
EXAMPLE = """\
resources: {}
# Add what corral keeps available, for example (corral validate --explain shows every default):
#   api-vips:
#     vip-set: [192.0.2.100/24, 192.0.2.101/24, 192.0.2.102/24]
#     on: {role: lb}
#   keystone:
#     systemd: apache2.service
#     on: {role: controller}
#     health: {http: "http://{node.address}:5000/v3"}
"""


def host_addresses() -> list[str]:
    """This host's global unicast addresses (IPv4 first), loopback and link-local left out."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(addr.address.split("%")[0])
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip in found):
                found.append(ip)
    return [str(ip) for ip in sorted(found, key=lambda ip: (ip.version, int(ip)))]


def parse_nodes(items: Sequence[str]) -> dict[str, str]:
    """``name=address`` items as a mapping; a usage error naming the bad item."""
    nodes: dict[str, str] = {}
    for item in items:
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise click.BadParameter(f"{item!r}: write NAME=ADDRESS", param_hint="--node")
        if name in nodes:
            raise click.BadParameter(f"{name!r} is given twice", param_hint="--node")
        nodes[name] = address
    return nodes


def scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it is a simple word, else quoted (JSON strings are
    YAML), so no flag value can change the spec's structure."""
    return text if PLAIN.fullmatch(text) else json.dumps(text)


def starting_spec(
    cluster: str,
    nodes: Mapping[str, str],
    roles: Sequence[str],
    tls: bool,
    profile: str,
    out: Path = SPEC,
) -> str:
    """The spec text (pure). ``tls``: the embedded store over TLS with the default bundle."""
    store = f"{{embedded: {{tls: {{bundle: {DEFAULT_BUNDLE}}}}}}}" if tls else "embedded"
    role_list = f", roles: [{', '.join(map(scalar, roles))}]" if roles else ""
    lines = [
        "# corral's spec, written by `corral init`: the same file on every node.",
        f"# Check it with: corral validate {out} --explain",
        f"cluster: {scalar(cluster)}",
        f"profile: {profile}",
        f"store: {store}",
    ]
    if tls:
        lines.append(f"# TLS: run `corral ca init` once and copy {DEFAULT_BUNDLE} to every node")
    lines.append("nodes:")
    lines += [
        f"  {scalar(name)}: {{address: {scalar(address)}{role_list}}}"
        for name, address in nodes.items()
    ]
    return "\n".join(lines) + "\n" + EXAMPLE


def flag_problem(issue: SpecIssue) -> str:
    """A spec problem said in terms of the flag that caused it."""
    path = [str(p) for p in issue.path]
    if path[:1] == ["nodes"] and len(path) > 1:
        return f"--node {path[1]}: {issue.message}"
    if path[:1] == ["cluster"]:
        return f"--cluster: {issue.message}"
    return f"{'.'.join(path) or 'spec'}: {issue.message}"


@click.command("init")
@click.option("--cluster", required=True, help="The cluster's name (a-z, 0-9, -).")
@click.option("--node", "node_items", multiple=True, metavar="NAME=ADDRESS",
              help="A node (repeat it; default: this host, by its short name and first "
              "global address).")  # fmt: skip
@click.option("--role", "roles", multiple=True, default=["controller"], show_default=True,
              help="Roles of every node (repeat it), for placement rules.")  # fmt: skip
@click.option("--profile", type=click.Choice(["lan", "wan", "local"]), default="lan",
              show_default=True)  # fmt: skip
@click.option("--tls/--no-tls", default=True, show_default=True,
              help=f"The store over TLS with the CA bundle in {DEFAULT_BUNDLE}.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=SPEC,
              show_default=True)  # fmt: skip
def init_cmd(
    cluster: str, node_items: tuple[str, ...], roles: tuple[str, ...], profile: str, tls: bool,
    out: Path,
) -> None:  # fmt: skip
    """Write a starting spec (never over an existing file)."""
    addresses = host_addresses()
    nodes = parse_nodes(node_items)
    me = socket.gethostname().split(".")[0]
    if not nodes:
        if not addresses:
            raise click.UsageError("this host has no global address: give --node NAME=ADDRESS")
        nodes = {me: addresses[0]}
    text = starting_spec(cluster, nodes, roles, tls, profile, out)
    try:
        load_spec_text(text, str(out))
    except SpecError as exc:
        raise click.UsageError("\n".join(map(flag_problem, exc.issues))) from None
    if out.exists():
        raise click.ClickException(f"{out} exists: corral init never overwrites a spec")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("x") as f:  # exclusive: a file made meanwhile is not overwritten either
        f.write(text)
    click.echo(f"{out}: written for cluster {cluster} ({len(nodes)} node(s))")
    _next_steps(nodes, addresses, me, tls)


def _next_steps(nodes: Mapping[str, str], addresses: Sequence[str], me: str, tls: bool) -> None:
    here = [name for name, address in nodes.items() if address in addresses]
    if not here:
        click.echo(f"note: no node's address is one of this host's ({', '.join(addresses)})")
    elif me not in nodes:
        click.echo(f"note: this host is {here[0]} in the spec but its short name is {me}: "
                   f"run `corral install-unit --node {here[0]}`")  # fmt: skip
    if tls:
        click.echo(f"next: corral ca init --out {DEFAULT_BUNDLE} (once), copy {DEFAULT_BUNDLE} "
                   "and the spec to every node")  # fmt: skip
