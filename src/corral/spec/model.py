"""The cluster spec: pydantic models of what an operator writes in one YAML file.

Contract:
- Unknown keys are errors everywhere (``extra="forbid"``); models are frozen.
- Shorthands keep the common case short: ``systemd: apache2.service``, ``process: "cmd"``,
  ``vip: 198.18.0.100/24``, ``vip-set: [..]``, ``health: {http: URL}``, ``store: embedded``,
  ``order: ["galera -> keystone"]``.
- After validation every resource carries its *effective* values: a field the resource did not
  set is taken from ``defaults`` (health timing, failure policy, stickiness), and ``mode`` is
  resolved by kind. ``corral validate --explain`` prints them.
- Cross-references (names, roles, cycles, subnets) are checked in :mod:`corral.spec.checks`,
  not here, so that every problem is reported with its position at once.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from corral.core.membership import MembershipConfig, with_probe_interval
from corral.core.membership import profile as membership_profile
from corral.spec.durations import Duration
from corral.spec.galera import GaleraSpec
from corral.spec.profiles import ProfileName, Timing, TimingOverrides, resolve_timing
from corral.spec.rabbitmq import RabbitmqSpec
from corral.spec.secrets import SecretRef
from corral.spec.store import EmbeddedStore, Store, StoreTls

Mode = Literal["active-active", "active-passive", "promotable"]
ResourceKind = Literal[
    "process", "systemd", "ocf", "galera", "rabbitmq", "vip", "vip-set", "haproxy"
]
SERVICE_KINDS: tuple[str, ...] = ("process", "systemd", "ocf", "galera", "rabbitmq")
KINDS: tuple[ResourceKind, ...] = (
    "process",
    "systemd",
    "ocf",
    "galera",
    "rabbitmq",
    "vip",
    "vip-set",
    "haproxy",
)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


def _shorthand(field: str) -> BeforeValidator:
    """Accept a bare scalar (or list) for a model whose main field is ``field``."""

    def wrap(value: Any) -> Any:
        if isinstance(value, str | list):
            return {field: value}
        return value

    return BeforeValidator(wrap)


def _written_address(value: Any) -> Any:
    """An address is written as text. pydantic would read a number as one, and ``true`` as 1
    (``0.0.0.1``): never what an operator meant, so refused here (found by fuzzing)."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"an IP address is written as text (like 198.18.0.11), not {value!r}")
    return value


IpAddress = Annotated[
    ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_written_address)
]
IpInterface = Annotated[
    ipaddress.IPv4Interface | ipaddress.IPv6Interface, BeforeValidator(_written_address)
]


# --- health checks -------------------------------------------------------------------------


class HttpCheck(_Model):
    """HTTP check: healthy when the answer has an expected status (and body substring)."""

    url: str = Field(description="URL template; {node.address}, {node.name} are filled in")
    status: list[int] = Field(default=[200], description="statuses that count as healthy")
    body: str | None = Field(default=None, description="substring the body must contain")
    method: Literal["GET", "HEAD", "POST"] = "GET"

    @model_validator(mode="before")
    @classmethod
    def _status_scalar(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("status"), int):
            return {**data, "status": [data["status"]]}
        return data


class HealthCheck(_Model):
    """One functional health check. Exactly one of ``http``, ``tcp``, ``exec``.

    ``exec`` follows the Nagios plugin convention: exit 0 OK, 1 WARNING (healthy, shown),
    2 CRITICAL and 3 UNKNOWN (unhealthy). A check that does not finish within ``timeout`` fails.
    A service turns healthy after ``rise`` successes in a row and unhealthy after ``fall``
    failures in a row; after a (re)start, failures do not count until ``grace`` has passed or
    the service first turned healthy (a service still starting is not failing).
    """

    http: Annotated[HttpCheck | None, _shorthand("url")] = None
    tcp: str | None = Field(default=None, description="host:port template")
    exec: str | None = Field(default=None, description="command line (Nagios plugin semantics)")
    interval: Duration = 1.0
    timeout: Duration = 0.5
    rise: int = Field(default=2, ge=1, le=100)
    fall: int = Field(default=2, ge=1, le=100)
    grace: Duration = 10.0

    @model_validator(mode="after")
    def _exactly_one(self) -> HealthCheck:
        given = [k for k in ("http", "tcp", "exec") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a health check needs exactly one of http, tcp, exec"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http else "tcp" if self.tcp else "exec"


class HealthDefaults(_Model):
    """Cluster-wide defaults for every health check's timing."""

    interval: Duration = 1.0
    timeout: Duration = 0.5
    rise: int = Field(default=2, ge=1, le=100)
    fall: int = Field(default=2, ge=1, le=100)
    grace: Duration = 10.0  # ends early at the first healthy verdict (core/health.py)


class FailurePolicy(_Model):
    """After ``migration_threshold`` failures on a node the resource is banned there until
    ``failure_timeout`` has passed since the last failure (0 = never expires).

    Systemic failures (``docs/safety-rules.md``, "Systemic failures"; judged by
    :mod:`corral.core.systemic`): when the resource failed on more than ``systemic_share`` of
    its nodes (and on at least two) within ``systemic_window``, those failures are one
    systemic event (overload, a dependency down): said once, not counted per node, no ban
    follows; restarts in place go on with their backoff. A resource that runs on one node at a
    time (active-passive, a VIP) counts the distinct nodes it failed on within the window:
    failing on its first node moves it as usual, failing again on the next one within the
    window is systemic, and it stays there. ``systemic_window: 0`` turns the rule off.
    """

    migration_threshold: int = Field(default=3, ge=1)
    failure_timeout: Duration = 600.0
    systemic_share: float = Field(
        default=0.5,
        description=(
            "failures on more than this share of the resource's nodes (at least two) within "
            "systemic_window are one systemic event, not counted per node; 0 < share < 1"
        ),
    )
    systemic_window: Duration = Field(
        default=60.0,
        description="the window of systemic_share; 0 turns systemic failures off",
    )

    @field_validator("systemic_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        # a share is a number strictly between 0 and 1: 0 would make any two failing nodes
        # systemic whatever the size, and "more than 1" of the nodes can never happen
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(
                f"must be a number more than 0 and less than 1 (0.5: more "
                f"than half of the resource's nodes), not {value!r}; "
                "to turn systemic failures off set systemic_window: 0"
            )
        return float(value)


class Defaults(_Model):
    health: HealthDefaults = HealthDefaults()
    failure: FailurePolicy = FailurePolicy()
    stickiness: int = Field(default=100, ge=0, description="score bonus for staying put")


# --- drivers and kinds ---------------------------------------------------------------------


class ProcessDriver(_Model):
    """A command corral supervises itself (own process group, logs to files)."""

    command: str
    cwd: str | None = None
    env: dict[str, str | SecretRef] = {}  # a secret by reference, resolved at each start
    user: str | None = None
    stop_timeout: Duration = 10.0


class SystemdDriver(_Model):
    unit: str = Field(pattern=r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|target|mount)$")
    stop_timeout: Duration = 90.0


class OcfDriver(_Model):
    """An OCF resource agent, ``provider:type`` (e.g. ``heartbeat:Dummy``)."""

    agent: str = Field(pattern=r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$")
    params: dict[str, str | int | float | bool | SecretRef] = {}  # secrets by reference
    monitor_interval: Duration = 10.0


class VipSpec(_Model):
    address: IpInterface
    interface: str | None = Field(default=None, description="default: the node's own interface")


class VipSetSpec(_Model):
    """One VIP per eligible node while there are enough nodes; survivors take the rest."""

    addresses: list[IpInterface] = Field(min_length=1)
    interface: str | None = None
    fail_back: bool = Field(default=True, description="a VIP returns to its node on recovery")


class HaproxySpec(_Model):
    """HAProxy instances whose frontends come from the services' ``balance`` entries."""

    stats_port: int = Field(default=8404, ge=1, le=65535)
    maxconn: int = Field(default=4096, ge=1)


class Balance(_Model):
    """Put this active-active service behind HAProxy on ``port`` of the VIP(s) of ``via``."""

    port: int = Field(ge=1, le=65535)
    via: str = Field(description="a vip or vip-set resource")
    backend_port: int | None = Field(default=None, ge=1, le=65535)
    mode: Literal["http", "tcp"] = "http"


class Placement(_Model):
    """Where instances may run: nodes that have every listed role, label and site."""

    role: str | None = None
    roles: list[str] = []
    labels: dict[str, str] = {}
    nodes: list[str] = []
    site: str | None = None

    def required_roles(self) -> list[str]:
        return ([self.role] if self.role else []) + list(self.roles)

    def allows(self, name: str, node: Node) -> bool:
        """True when node ``name`` has every role, label and site this placement asks for."""
        if not set(self.required_roles()) <= set(node.roles):
            return False
        if any(node.labels.get(k) != v for k, v in self.labels.items()):
            return False
        if self.nodes and name not in self.nodes:
            return False
        return self.site is None or node.site == self.site


# --- constraints ---------------------------------------------------------------------------

_ORDER_RE = re.compile(r"^\s*([^\s~>-][^\s]*)\s*(->|~>)\s*([^\s]+)\s*$")


class Order(_Model):
    """``first -> then``: start ``first`` before ``then``, stop in reverse (mandatory: ``then``
    stops when ``first`` cannot run). ``first ~> then`` is optional: only orders the actions."""

    first: str
    then: str
    kind: Literal["mandatory", "optional"] = "mandatory"

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _ORDER_RE.match(data)
            if not match:
                raise ValueError(
                    f"cannot read order {data!r}: write 'first -> then' (mandatory) "
                    "or 'first ~> then' (optional)"
                )
            kind = "mandatory" if match.group(2) == "->" else "optional"
            return {"first": match.group(1), "then": match.group(3), "kind": kind}
        return data


class Resource(_Model):
    """A resource: exactly one kind key, plus how and where it runs."""

    process: Annotated[ProcessDriver | None, _shorthand("command")] = None
    systemd: Annotated[SystemdDriver | None, _shorthand("unit")] = None
    ocf: Annotated[OcfDriver | None, _shorthand("agent")] = None
    galera: GaleraSpec | None = None
    rabbitmq: RabbitmqSpec | None = None
    vip: Annotated[VipSpec | None, _shorthand("address")] = None
    vip_set: Annotated[VipSetSpec | None, _shorthand("addresses")] = Field(
        default=None, alias="vip-set"
    )
    haproxy: HaproxySpec | None = None

    mode: Mode = "active-active"
    instances: int | None = Field(default=None, ge=1, description="default: every eligible node")
    promoted: int | None = Field(default=None, ge=0, description="promotable: how many promoted")
    max_per_node: int = Field(default=1, ge=1)
    on: Placement = Placement()
    prefer: dict[str, int] = Field(default={}, description="node name -> location score")
    stickiness: int = Field(default=100, ge=0)
    health: Annotated[
        list[HealthCheck], BeforeValidator(lambda v: [v] if isinstance(v, dict) else v)
    ] = []
    failure: FailurePolicy = FailurePolicy()
    balance: Balance | None = None
    dns: str | None = Field(default=None, description="vip-set: name resolving to live VIPs")
    with_: list[str] = Field(default=[], alias="with", description="run only beside these")
    apart: list[str] = Field(default=[], description="never on a node running these")
    ticket: str | None = Field(default=None, description="run only in the site holding it")

    @model_validator(mode="after")
    def _one_kind(self) -> Resource:
        given = [k for k in KINDS if getattr(self, k.replace("-", "_")) is not None]
        if len(given) != 1:
            raise ValueError(
                "a resource needs exactly one kind: "
                + ", ".join(KINDS)
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> ResourceKind:
        for k in KINDS:
            if getattr(self, k.replace("-", "_")) is not None:
                return k
        raise AssertionError("validated resource without a kind")

    @property
    def exclusive(self) -> bool:
        """True when an instance (or a promoted role) may run on one node only."""
        return self.mode != "active-active" or self.kind in ("vip", "vip-set")


# --- nodes, store, fencing -----------------------------------------------------------------


class Node(_Model):
    address: IpAddress
    roles: list[str] = []
    labels: dict[str, str] = {}
    kind: Literal["core", "remote"] = Field(
        default="core", description="core nodes run etcd voting members; remote run agents only"
    )
    site: str | None = None
    fence: list[str] | None = Field(default=None, description="fence devices; default all")
    attrs: dict[str, str] = Field(default={}, description="values for {node.<attr>} templates")


class FenceDevice(_Model):
    """A fence agent speaking the fence-agents stdin protocol (``fence_ipmilan``, ...).

    ``agent`` is the agent's name or a command line; it receives ``action=``, ``plug=<node>``
    and every ``params`` entry (``{node.*}`` templates filled) as ``key=value`` lines on stdin,
    and succeeds with exit status 0. A secret (``password``) is a :class:`SecretRef`, resolved
    by the fencing node at each fence (:mod:`corral.spec.secrets`); a literal one is refused.
    """

    agent: str
    params: dict[str, str | int | float | bool | SecretRef] = {}
    action: Literal["off", "reboot"] = Field(
        default="reboot", description="what fencing does to a lost node (Pacemaker's default)"
    )
    timeout: Duration = Field(default=20.0, description="the fence fails if not done by then")


# --- the spec ------------------------------------------------------------------------------


class Gossip(_Model):
    """Gossip membership (SWIM + Lifeguard) between the agents: UDP and TCP on ``port`` of
    every node address. The encryption key is created in the store on first start."""

    port: int = Field(default=7946, ge=1, le=65535)
    probe_interval: Duration | None = Field(
        default=None,
        description=(
            "time between two probes of each member (default: the profile's, 200ms on lan); "
            "shorter finds a crash sooner for more packets and CPU, suspicion keeps its length"
        ),
    )


class DnsService(_Model):
    """The agents' authoritative DNS responder for vip-set names (``dns:`` on a vip-set): every
    node that may hold the set's VIPs answers on UDP and TCP ``port`` of its address."""

    port: int = Field(default=53, ge=1, le=65535)


class ApiService(_Model):
    """The agents' HTTP API (:mod:`corral.api`): health endpoints for load balancers, status,
    metrics. Every agent listens on TCP ``port`` of ``address`` (default: its node's address);
    the health endpoints need no token, everything else does."""

    enabled: bool = Field(default=True, description="false: no agent listens")
    port: int = Field(default=7948, ge=1, le=65535)
    address: IpAddress | None = Field(
        default=None, description="where to listen (default: the node's address; 0.0.0.0: all)"
    )
    tls: bool = Field(default=False, description="true: HTTPS, the node's store.*.tls certificate")


class Spec(_Model):
    """A whole cluster. Resources hold effective values after validation (see module doc)."""

    cluster: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    profile: ProfileName = "lan"
    timing: TimingOverrides = TimingOverrides()
    store: Store = Store(embedded=EmbeddedStore())
    gossip: Gossip = Gossip()
    dns: DnsService = DnsService()
    api: ApiService = ApiService()
    nodes: dict[str, Node] = Field(min_length=1)
    fencing: dict[str, FenceDevice] = {}
    tickets: list[str] = []
    defaults: Defaults = Defaults()
    resources: dict[str, Resource] = {}
    order: list[Order] = []

    @model_validator(mode="after")
    def _resolve(self) -> Spec:
        if self.api.tls and self.store_tls is None:  # the API serves the node's certificate
            raise ValueError("api.tls: true needs the store's TLS (store.embedded or etcd .tls)")
        for name, res in list(self.resources.items()):
            res = _resolve_resource(res, self.defaults)
            if (
                res.kind in ("galera", "rabbitmq")
                and res.mode == "promotable"
                and "promoted" not in res.model_fields_set
            ):
                # every member promoted (multi-master; one writer takes the writes)
                eligible = sum(res.on.allows(n, node) for n, node in self.nodes.items())
                promoted = res.instances if res.instances is not None else eligible
                res = res.model_copy(update={"promoted": promoted})
            self.resources[name] = res
        return self

    @cached_property
    def effective_gossip(self) -> MembershipConfig:
        """The gossip membership configuration: the profile's, probing every
        ``gossip.probe_interval`` when set (checked when the spec is loaded)."""
        return with_probe_interval(membership_profile(self.profile), self.gossip.probe_interval)

    @cached_property
    def effective_timing(self) -> Timing:
        """The resolved timing (computed once: the agent reads it several times a tick)."""
        return resolve_timing(self.profile, self.timing)

    @property
    def store_tls(self) -> tuple[str, StoreTls] | None:
        """``(field path, settings)`` of the store's TLS (``store.embedded.tls`` or
        ``store.etcd.tls``), or None for plain http."""
        if self.store.embedded is not None and self.store.embedded.tls is not None:
            return "store.embedded.tls", self.store.embedded.tls
        if self.store.etcd is not None and self.store.etcd.tls is not None:
            return "store.etcd.tls", self.store.etcd.tls
        return None

    def core_nodes(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == "core"]


def _resolve_resource(res: Resource, defaults: Defaults) -> Resource:
    """Fill what ``res`` left unset from ``defaults``; resolve ``mode`` by kind."""
    update: dict[str, Any] = {}
    if "stickiness" not in res.model_fields_set:
        update["stickiness"] = defaults.stickiness
    if "failure" not in res.model_fields_set:
        update["failure"] = defaults.failure
    else:
        unset = {
            k: getattr(defaults.failure, k)
            for k in FailurePolicy.model_fields
            if k not in res.failure.model_fields_set
        }
        update["failure"] = res.failure.model_copy(update=unset)
    checks = []
    for check in res.health:
        unset = {
            k: getattr(defaults.health, k)
            for k in HealthDefaults.model_fields
            if k not in check.model_fields_set
        }
        checks.append(check.model_copy(update=unset))
    update["health"] = checks
    if "mode" not in res.model_fields_set and res.kind == "vip":
        update["mode"] = "active-passive"
    if "mode" not in res.model_fields_set and res.kind in ("galera", "rabbitmq"):
        update["mode"] = "promotable"
    return res.model_copy(update=update)
