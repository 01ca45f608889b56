"""Which backend servers every HAProxy should send traffic to (pure).

corral does not wait for HAProxy's own checks to notice a dead backend: every load-balancer
agent computes, from what the store and its gossip view say, the state of each server of each
balanced service, and applies it through HAProxy's runtime API at once.

One backend per balanced service (a resource with ``balance:``), one server per node of its
static placement, named after the node. A server is

- ``ready`` when its node is online (a live registration, not fenced, not dead in this agent's
  gossip view) and the service's instance there reports ``healthy``;
- ``drain`` when that instance reports ``draining`` (a planned stop is under way: existing
  requests finish, new ones go elsewhere);
- ``maint`` otherwise (not running, starting, unhealthy, failed, or its node lost).

A starting instance takes no traffic until its checks pass (``rise``); a node that gossip holds
dead is out of rotation at once, before the controller or the store has noticed.

A balanced **galera** service takes writes on one node only: every server but the writer the
store names (``galera/<res>/writer``, one record every load balancer reads) is ``maint``, and
with no writer named every server is (writes fail until the controller names one). So two load
balancers never send writes to different nodes, whatever their own checks see: HAProxy's
``backup`` servers would be a per-balancer failover, each deciding alone when the writer
looks dead, so corral does not render them and moves the writer only through the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Literal

from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.spec import Spec

ServerState = Literal["ready", "drain", "maint"]
Desired = dict[str, dict[str, ServerState]]


def balanced(spec: Spec) -> list[str]:
    """The balanced services, in spec order."""
    return [name for name, res in spec.resources.items() if res.balance is not None]


def backend_servers(spec: Spec) -> dict[str, list[str]]:
    """backend (service) -> its server names (nodes of its static placement, spec order)."""
    ctx = Context(spec, Snapshot())
    return {name: [n for n in spec.nodes if n in ctx.static_set(name)] for name in balanced(spec)}


def desired_servers(
    spec: Spec,
    online: Set[str],
    health: Mapping[tuple[str, str], str],
    lost: Set[str] = frozenset(),
    writers: Mapping[str, str] | None = None,
) -> Desired:
    """The state of every server: ``online`` nodes (live, unfenced registrations), ``health``
    (resource, node) -> the instance's reported health (``healthy``, ``starting``,
    ``unhealthy``, ``draining``; absent = not running), ``lost`` nodes gossip holds dead,
    ``writers``: galera service -> the writer its record names (see the module doc)."""
    out: Desired = {}
    for name, servers in backend_servers(spec).items():
        states: dict[str, ServerState] = {}
        only = (writers or {}).get(name, "") if spec.resources[name].galera else None
        for node in servers:
            said = health.get((name, node))
            if node not in online or node in lost or said is None or only not in (None, node):
                states[node] = "maint"
            elif said == "healthy":
                states[node] = "ready"
            elif said == "draining":
                states[node] = "drain"
            else:
                states[node] = "maint"
        out[name] = states
    return out


def drained(
    applied: Mapping[str, Mapping[str, Mapping[str, str]]],
    backend: str,
    server: str,
    lb_nodes: Set[str],
) -> bool:
    """True when every load balancer in ``lb_nodes`` reports ``server`` of ``backend`` out of
    rotation (``drain`` or ``maint``) in ``applied`` (lb node -> backend -> server -> state).
    A load balancer that reports nothing for the backend has not caught up: not drained."""
    for lb in lb_nodes:
        state = applied.get(lb, {}).get(backend, {}).get(server)
        if state not in ("drain", "maint"):
            return False
    return True
