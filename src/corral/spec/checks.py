"""Cross-reference checks on a structurally valid spec.

Each check returns ``(path, message)`` pairs; the loader adds positions. A check never raises:
all problems of a spec are reported at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator

from corral.spec.dnsname import name_problem
from corral.spec.model import SERVICE_KINDS, Resource, Spec
from corral.spec.secrets import literal_in_command, literal_secrets
from corral.spec.yamlpos import Path

Problem = tuple[Path, str]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MAX_CORE = 7  # etcd voting members: more slows every write and buys no extra safety


def check_spec(spec: Spec) -> list[Problem]:
    """Every cross-reference problem of ``spec`` (empty when it is consistent)."""
    problems: list[Problem] = []
    for check in (
        _names,
        _nodes,
        _store,
        _gossip,
        _resources,
        _references,
        _vips,
        _order_cycles,
        _secrets,
    ):
        problems.extend(check(spec))
    return problems


def _names(spec: Spec) -> Iterator[Problem]:
    for section in ("nodes", "resources", "fencing"):
        for name in getattr(spec, section):
            if not NAME_RE.match(name):
                yield (
                    (section, name),
                    (
                        f"bad name {name!r}: use lower-case letters, digits, '-', '_', '.' "
                        "(at most 63, starting with a letter or digit)"
                    ),
                )
    clash = set(spec.nodes) & set(spec.resources)
    for name in sorted(clash):
        yield ("resources", name), f"{name!r} is both a node and a resource name"


def _gossip(spec: Spec) -> Iterator[Problem]:
    interval = spec.gossip.probe_interval
    if interval is None:
        return
    if not 0.05 <= interval <= 10.0:
        yield ("gossip", "probe_interval"), f"probe_interval {interval:g}s: use 50ms to 10s"
        return
    try:
        spec.effective_gossip  # noqa: B018 (derived here as the agent will derive it)
    except ValueError as exc:
        yield ("gossip", "probe_interval"), f"{exc} of the {spec.profile} profile"


def _nodes(spec: Spec) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for name, node in spec.nodes.items():
        addr = str(node.address)
        if addr in seen:
            yield (
                ("nodes", name, "address"),
                f"address {addr} is also the address of node {seen[addr]!r}",
            )
        seen.setdefault(addr, name)
        for device in node.fence or []:
            if device not in spec.fencing:
                yield ("nodes", name, "fence"), _unknown("fence device", device, spec.fencing)
        if spec.tickets and node.site is None:
            yield ("nodes", name, "site"), "tickets are defined, so every node needs a site"


def _secrets(spec: Spec) -> Iterator[Problem]:
    """Secrets only by reference (:mod:`corral.spec.secrets`): no password in clear."""
    for name, device in spec.fencing.items():
        yield from literal_secrets(("fencing", name, "params"), device.params)
    for name, res in spec.resources.items():
        if res.ocf is not None:
            yield from literal_secrets(("resources", name, "ocf", "params"), res.ocf.params)
        if res.process is not None:
            yield from literal_secrets(("resources", name, "process", "env"), res.process.env)
        yield from _commands(name, res)
    for name, device in spec.fencing.items():
        if said := literal_in_command(device.agent):
            yield ("fencing", name, "agent"), said


def _commands(name: str, res: Resource) -> Iterator[Problem]:
    """No secret in clear on the command lines of a resource (its process, its checks)."""
    if res.process is not None and (said := literal_in_command(res.process.command)):
        yield ("resources", name, "process", "command"), said
    for i, check in enumerate(res.health):
        if check.exec is not None and (said := literal_in_command(check.exec)):
            yield ("resources", name, "health", i, "exec"), said


def _store(spec: Spec) -> Iterator[Problem]:
    if spec.store.embedded is None:
        return
    core = spec.core_nodes()
    if not core:
        yield ("nodes",), "an embedded store needs at least one core node (kind: core)"
    elif len(core) > MAX_CORE:
        yield (
            ("nodes",),
            (
                f"{len(core)} core nodes: an embedded store runs an etcd voting member on each "
                f"core node; use at most {MAX_CORE} and mark the others 'kind: remote'"
            ),
        )
    elif len(core) % 2 == 0:
        yield (
            ("nodes",),
            (
                f"{len(core)} core nodes: an even number of etcd members tolerates no more "
                f"failures than {len(core) - 1}; make one 'kind: remote' or add one"
            ),
        )
    timing = spec.effective_timing
    if timing.lease_ttl < 1.5 * timing.etcd_election:
        yield (
            ("timing", "lease_ttl"),
            (
                f"lease_ttl {timing.lease_ttl:g}s is below etcd's minimum lease "
                f"(1.5 x etcd_election = {1.5 * timing.etcd_election:g}s)"
            ),
        )
    if timing.safety_margin >= timing.lease_ttl or timing.keepalive_interval >= (
        timing.lease_ttl - timing.safety_margin
    ):
        yield (
            ("timing",),
            (
                "keepalive_interval must be shorter than lease_ttl - safety_margin, "
                "or the agent would self-fence between two keepalives"
            ),
        )


def _eligible(spec: Spec, res: Resource) -> list[str]:
    return [name for name, node in spec.nodes.items() if res.on.allows(name, node)]


def _resources(spec: Spec) -> Iterator[Problem]:
    dns_names: dict[str, str] = {}  # DNS name -> the vip-set that has it
    for name, res in spec.resources.items():
        base: Path = ("resources", name)
        yield from _placement_names(spec, base, res)
        yield from _mode(spec, name, res)
        yield from _rabbitmq(name, res)
        if res.ticket is not None and res.ticket not in spec.tickets:
            yield (*base, "ticket"), _unknown("ticket", res.ticket, spec.tickets)
        yield from _dns_name(base, name, res, dns_names)
        for check_idx, check in enumerate(res.health):
            if check.timeout > 0 and check.interval > 0 and check.timeout > check.interval * 10:
                yield (
                    (*base, "health", check_idx, "timeout"),
                    (f"timeout {check.timeout:g}s is more than 10 x interval"),
                )


def _placement_names(spec: Spec, base: Path, res: Resource) -> Iterator[Problem]:
    """Roles, nodes and sites that ``on:`` and ``prefer:`` name must exist; some node must be
    eligible."""
    roles = {r for node in spec.nodes.values() for r in node.roles}
    sites = {node.site for node in spec.nodes.values() if node.site}
    for role in res.on.required_roles():
        if role not in roles:
            yield (*base, "on"), _unknown("role", role, roles, "no node has it")
    for node in [*res.on.nodes, *res.prefer]:
        if node not in spec.nodes:
            yield (
                (*base, "on" if node in res.on.nodes else "prefer"),
                _unknown("node", node, spec.nodes),
            )
    if res.on.site is not None and res.on.site not in sites:
        yield (*base, "on", "site"), _unknown("site", res.on.site, sites)
    if not _eligible(spec, res) and set(res.on.required_roles()) <= roles:
        yield (*base, "on"), "no node is eligible for this resource"


def _dns_name(base: Path, name: str, res: Resource, dns_names: dict[str, str]) -> Iterator[Problem]:
    """A vip-set's ``dns:`` is a servable name no other vip-set has (recorded in
    ``dns_names``)."""
    if res.dns is None:
        return
    if res.kind != "vip-set":
        yield (*base, "dns"), "dns names the VIPs of a vip-set; this resource is not one"
        return
    problem = name_problem(res.dns)
    key = res.dns.lower().rstrip(".")
    if problem is not None:
        yield (*base, "dns"), problem
    elif key in dns_names:
        yield (*base, "dns"), f"{res.dns} is already the name of {dns_names[key]}"
    else:
        dns_names[key] = name


def _rabbitmq(name: str, res: Resource) -> Iterator[Problem]:
    if res.rabbitmq is None:
        return
    base: Path = ("resources", name)
    if res.mode != "promotable":
        yield (*base, "mode"), f"a rabbitmq resource is promotable (brokers run), not {res.mode}"
    if res.rabbitmq.erlang_cookie is None:
        yield (*base, "rabbitmq", "erlang_cookie"), "every broker must share a cookie: give one"


def _mode(spec: Spec, name: str, res: Resource) -> Iterator[Problem]:
    base: Path = ("resources", name)
    explicit = "mode" in res.model_fields_set
    if res.kind == "vip-set" and explicit:
        yield (
            (*base, "mode"),
            (
                "a vip-set places one exclusive VIP per node by itself; 'mode' does not apply "
                f"(got {res.mode})"
            ),
        )
    if res.kind == "vip" and res.mode != "active-passive":
        yield (*base, "mode"), f"a vip is held by one node at a time; it cannot be {res.mode}"
    if res.kind == "galera" and res.mode != "promotable":
        yield (*base, "mode"), f"a galera resource is promotable (members promoted), not {res.mode}"
    if res.kind == "haproxy" and res.mode != "active-active":
        yield (*base, "mode"), "haproxy runs active-active on its nodes"
    if res.promoted is not None and res.mode != "promotable":
        yield (*base, "promoted"), f"'promoted' only applies to mode promotable, not {res.mode}"
    if res.mode == "active-passive" and res.instances not in (None, 1):
        yield (*base, "instances"), "an active-passive resource has exactly one instance"
    if res.mode == "promotable" and res.kind not in SERVICE_KINDS:
        yield (*base, "mode"), f"a {res.kind} resource cannot be promotable"
    if (
        res.mode == "promotable"
        and res.promoted is not None
        and res.instances is not None
        and res.promoted > res.instances
    ):
        yield (
            (*base, "promoted"),
            (f"promoted ({res.promoted}) is more than instances ({res.instances})"),
        )
    eligible = len(_eligible(spec, res))
    if res.instances is not None and eligible and res.instances > eligible * res.max_per_node:
        yield (
            (*base, "instances"),
            (
                f"{res.instances} instances cannot fit: {eligible} eligible node(s) x "
                f"max_per_node {res.max_per_node}"
            ),
        )
    if res.balance is not None and res.kind not in SERVICE_KINDS:
        # (an active-passive service behind HAProxy, one backend at a time, is valid)
        yield (*base, "balance"), f"only services can be balanced, not a {res.kind}"


def _references(spec: Spec) -> Iterator[Problem]:
    names = spec.resources
    for name, res in names.items():
        base: Path = ("resources", name)
        for field, targets in (("with", res.with_), ("apart", res.apart)):
            for i, target in enumerate(targets):
                if target not in names:
                    yield (*base, field, i), _unknown("resource", target, names)
                elif target == name:
                    yield (*base, field, i), "a resource cannot be placed relative to itself"
        if set(res.with_) & set(res.apart):
            yield (*base, "apart"), "a resource cannot be both 'with' and 'apart' another one"
        yield from _balance(spec, base, res)
    for i, order in enumerate(spec.order):
        for side in ("first", "then"):
            target = getattr(order, side)
            if target not in names:
                yield ("order", i), _unknown("resource", target, names)
        if order.first == order.then:
            yield ("order", i), f"{order.first!r} cannot be ordered after itself"
    yield from _balance_ports(spec)


def _balance(spec: Spec, base: Path, res: Resource) -> Iterator[Problem]:
    """``balance.via`` names a vip or vip-set, and some resource is HAProxy."""
    if res.balance is None:
        return
    names, via = spec.resources, res.balance.via
    if via not in names:
        yield (*base, "balance", "via"), _unknown("resource", via, names)
    elif names[via].kind not in ("vip", "vip-set"):
        yield (
            (*base, "balance", "via"),
            (f"{via!r} is a {names[via].kind}; balance.via names a vip or vip-set"),
        )
    if not any(r.kind == "haproxy" for r in names.values()):
        yield (*base, "balance"), "balance needs a resource of kind haproxy in the spec"


def _balance_ports(spec: Spec) -> Iterator[Problem]:
    """No two services balanced on one port of one VIP resource."""
    ports: dict[tuple[str, int], str] = {}
    for name, res in spec.resources.items():
        if res.balance is not None:
            key = (res.balance.via, res.balance.port)
            if key in ports:
                yield (
                    ("resources", name, "balance", "port"),
                    (f"port {key[1]} on {key[0]!r} is already used by {ports[key]!r}"),
                )
            ports.setdefault(key, name)


def _vips(spec: Spec) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    node_addrs = {str(n.address): name for name, n in spec.nodes.items()}
    for name, res in spec.resources.items():
        addrs: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
        if res.vip is not None:
            addrs = [res.vip.address]
        elif res.vip_set is not None:
            addrs = list(res.vip_set.addresses)
        eligible = [spec.nodes[n] for n in _eligible(spec, res)]
        for i, addr in enumerate(addrs):
            path: Path = (
                ("resources", name, "vip") if res.vip else ("resources", name, "vip-set", i)
            )
            ip = str(addr.ip)
            if ip in owners:
                yield path, f"VIP {ip} is also used by {owners[ip]!r}"
            owners.setdefault(ip, name)
            if ip in node_addrs:
                yield path, f"VIP {ip} is the address of node {node_addrs[ip]!r}"
            if eligible and not any(n.address in addr.network for n in eligible):
                yield (
                    path,
                    (
                        f"VIP {addr} is outside the subnet of every eligible node "
                        f"({', '.join(str(n.address) for n in eligible)})"
                    ),
                )


def _order_cycles(spec: Spec) -> Iterator[Problem]:
    graph: dict[str, list[tuple[str, int]]] = {}
    for i, order in enumerate(spec.order):
        graph.setdefault(order.first, []).append((order.then, i))
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt, _ in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in list(graph):
        if start not in state and (cycle := visit(start)):
            first = cycle[0]
            index = next(i for t, i in graph[first] if t == cycle[1])
            yield ("order", index), "ordering cycle: " + " -> ".join(cycle)
            return


def _unknown(what: str, name: str, known: Iterable[str], reason: str | None = None) -> str:
    names = sorted(known)
    hint = f" (known: {', '.join(names)})" if names else ""
    return f"unknown {what} {name!r}" + (f": {reason}" if reason else "") + hint
