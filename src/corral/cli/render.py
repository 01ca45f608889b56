"""Human-readable views of a spec (``corral validate``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from corral.core.galera.evs import provider_options
from corral.drivers.rabbitmq import net_ticktime
from corral.spec import Resource, Spec
from corral.spec.durations import format_duration as fmt
from corral.spec.profiles import Timing


def placement_text(res: Resource) -> str:
    place = res.on
    parts = [f"role {r}" for r in place.required_roles()]
    parts += [f"{k}={v}" for k, v in place.labels.items()]
    if place.nodes:
        parts.append("nodes " + ",".join(place.nodes))
    if place.site:
        parts.append(f"site {place.site}")
    return ", ".join(parts) or "any node"


def kind_text(res: Resource) -> str:
    if res.process:
        return f"process: {res.process.command}"
    if res.systemd:
        return f"systemd: {res.systemd.unit}"
    if res.ocf:
        return f"ocf: {res.ocf.agent}"
    if res.galera:
        return f"galera: port {res.galera.port}, {res.galera.base_dir}"
    if res.rabbitmq:
        return f"rabbitmq: port {res.rabbitmq.amqp_port}, {res.rabbitmq.base_dir}"
    if res.vip:
        return f"vip: {res.vip.address}"
    if res.vip_set:
        return "vip-set: " + ", ".join(str(a) for a in res.vip_set.addresses)
    return "haproxy"


def mode_text(res: Resource) -> str:
    if res.kind == "vip-set":
        return "one VIP per node"
    text: str = res.mode
    if res.instances:
        text += f" x{res.instances}"
    if res.mode == "promotable":
        text += f", {res.promoted if res.promoted is not None else 1} promoted"
    return text


def galera_text(res: Resource, timing: Timing) -> list[str]:
    """A galera resource's effective settings, as ``validate --explain`` says them."""
    g = res.galera
    if g is None:
        return []
    secret = "by reference" if g.sst_password is not None else "none (unix_socket)"
    return [
        f"galera: sst {g.sst_method} as {g.sst_user} (password {secret}), check user "
        f"{g.check_user}, mariadbd as {g.run_as}",
        f"bootstrap waits {fmt(g.bootstrap_wait)} for gone nodes before a majority bootstrap",
        # one entry per line: the whole string does not fit in a table cell
        "wsrep_provider_options: "
        + provider_options(timing, g.provider_options).replace(";", "; "),
    ]


def rabbitmq_text(res: Resource, timing: Timing) -> list[str]:
    """A rabbitmq resource's effective settings, as ``validate --explain`` says them."""
    r = res.rabbitmq
    if r is None:
        return []
    login = f"{r.user} (password by reference)" if r.password is not None else "guest"
    forget = fmt(r.forget_fenced_after) if r.forget_fenced_after is not None else "never"
    return [
        f"rabbitmq: AMQP {r.amqp_port}, distribution {r.dist_port}, clients and checks as "
        f"{login}; pause_minority, net_ticktime {net_ticktime(timing)}s (timing profile)",
        f"force_boot after {fmt(r.force_boot_after)} waiting for gone last-running members; "
        f"fenced members forgotten after: {forget}",
    ]


def extras_text(res: Resource, explain: bool, timing: Timing | None = None) -> str:
    out = []
    for check in res.health:
        target = check.http.url if check.http else check.tcp or check.exec
        line = f"{check.kind} {target}"
        if explain:
            line += (
                f" (every {fmt(check.interval)}, timeout {fmt(check.timeout)}, "
                f"rise {check.rise}, fall {check.fall}, grace {fmt(check.grace)})"
            )
        out.append(line)
    if res.balance:
        out.append(f"balanced on {res.balance.via}:{res.balance.port}")
    if res.with_:
        out.append("with " + ", ".join(res.with_))
    if res.apart:
        out.append("apart from " + ", ".join(res.apart))
    if res.dns:
        out.append(f"dns {res.dns}")
    if res.ticket:
        out.append(f"ticket {res.ticket}")
    if explain:
        out.append(
            f"stickiness {res.stickiness}; banned after {res.failure.migration_threshold} "
            f"failure(s) for {fmt(res.failure.failure_timeout)}"
        )
        out.append(systemic_text(res))
        if timing is not None:
            out += galera_text(res, timing) + rabbitmq_text(res, timing)
    return "\n".join(out)


def systemic_text(res: Resource) -> str:
    """The resource's systemic-failure rule, as ``validate --explain`` says it."""
    policy = res.failure
    if policy.systemic_window <= 0:
        return "systemic failures off"
    return (
        f"systemic: failing on >{policy.systemic_share:.0%} of nodes in "
        f"{fmt(policy.systemic_window)}"
    )


def print_summary(spec: Spec, console: Console, *, explain: bool = False) -> None:
    """One screen: cluster, timing, nodes, resources, ordering."""
    timing = spec.effective_timing
    store = (
        "embedded etcd"
        if spec.store.embedded
        else "external etcd " + ", ".join(spec.store.etcd.endpoints if spec.store.etcd else [])
    )
    if (tls := spec.store_tls) is not None:
        store += f" over TLS ({'CA bundle ' + tls[1].bundle if tls[1].bundle else 'own files'})"
    console.print(
        f"[bold]cluster {spec.cluster}[/bold]: {len(spec.nodes)} nodes, "
        f"{len(spec.resources)} resources; profile {spec.profile}; store: {store}"
    )
    console.print(
        f"timing: lease {fmt(timing.lease_ttl)}, keepalive {fmt(timing.keepalive_interval)}, "
        f"self-fence {fmt(timing.safety_margin)} before expiry; etcd heartbeat "
        f"{fmt(timing.etcd_heartbeat)}, election {fmt(timing.etcd_election)}"
    )
    gossip = spec.effective_gossip
    low, high = gossip.suspicion_bounds(len(spec.nodes))
    console.print(
        f"gossip: port {spec.gossip.port}, probe every {fmt(gossip.probe_interval)} "
        f"(timeout {fmt(gossip.probe_timeout)}), suspicion {fmt(low)} to {fmt(high)}"
    )
    nodes = Table("node", "address", "kind", "roles", "site", box=None, header_style="bold")
    for name, node in spec.nodes.items():
        nodes.add_row(name, str(node.address), node.kind, ", ".join(node.roles), node.site or "")
    console.print(nodes)
    table = Table(
        "resource", "what", "mode", "where", "checks and constraints", box=None, header_style="bold"
    )
    for name, res in spec.resources.items():
        table.add_row(
            name,
            kind_text(res),
            mode_text(res),
            placement_text(res),
            extras_text(res, explain, timing),
        )
    console.print(table)
    if spec.order:
        console.print(
            "order: "
            + "; ".join(
                f"{o.first} {'->' if o.kind == 'mandatory' else '~>'} {o.then}" for o in spec.order
            )
        )
