"""The key layout of a cluster in the store, under ``/corral/<cluster>/``:

=============================== ==========================================================
``spec``                        desired configuration (YAML text)
``controller``                  the controller's name, bound to its lease (fencing token)
``nodes/<node>``                registration and attributes, leased
``assign/<resource>``           placement, written by the controller only (fenced txn)
``status/<node>/<resource>``    observed state, leased
``admin/<name>[/<name>...]``    maintenance, standby, tickets
``failcounts/<node>/<resource>`` failure counts
``events/<time_ns>-<node>``     the bounded event log
``fenced/<node>``               a successful fence of one registration of a node
``lb/<node>``                   the server states this node's HAProxy applied, leased
``requests/<node>/<resource>``  an operator's request to one agent (rolling restart)
``systemic/<resource>``         an announced systemic episode, written by the controller only
``gossip-key``                  the gossip keyring (base64 keys, one per line, primary first)
``keys/ack/<node>``             the gossip keyring version a node applied, leased
``keys/rotation``               the gossip key rotation under way (or the last one)
``gossip-key``                  the gossip keyring (a secret: agents and admins only)
``auth/tokens/<id>``            an API token, salted and hashed (a secret: agents and admins)
``auth/users/<name>``           a person's role (:mod:`corral.auth`), written by admins
``galera/<res>/report/<node>``  a Galera node's state (grastate, recovered, view), leased
``galera/<res>/bootstrap``      the one bootstrap claim (rule 6), written by the controller
``galera/<res>/writer``         the one node HAProxy sends writes to, written by the controller
``rabbitmq/<res>/report/<n>``   a RabbitMQ node's broker state and data, leased
``rabbitmq/<res>/running/<n>``  the nodes it ran with (no lease: the last-running set)
``rabbitmq/<res>/plan``         each node's next step, written by the controller
``rabbitmq/<r>/force-boot/<o>`` the one force-boot claim of outage o (rule 6), controller
``alerts/cursor``               the store revision up to which events became alert duties
``alerts/duty/<sink>/<event>``  one delivery owed by one agent (rule 6), until done
``alerts/log/<sink>/<event>``   a delivery done or given up (bounded; ``corral alerts log``)
``alerts/nodes``                the node states the controller's node events last said
=============================== ==========================================================

Every name is validated (letters, digits, ``_ . -``; no ``/``; at most 63 characters; not
starting with ``.`` or ``-``) so that no name can reach into another key's space or collide
with a prefix. Event keys use a fixed-width time and the writing node instead of a shared
sequence counter: no contended counter key, and key order is time order.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
SECTIONS = (
    "spec",
    "controller",
    "nodes",
    "assign",
    "status",
    "admin",
    "failcounts",
    "events",
    "members",
    "fenced",
    "lb",
    "requests",
    "systemic",
    "keys",
    "auth",
    "galera",
    "rabbitmq",
    "alerts",
)


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a valid name for a key part, else ``ValueError`` naming ``kind``."""
    if not _NAME.match(value):
        raise ValueError(
            f"bad {kind} name for a store key: {value!r} (letters, digits, _ . -; no '/'; "
            "at most 63 characters)"
        )
    return value


class Keys:
    """Key builder for one cluster. Every key method returns ``bytes`` ready for the store;
    ``*_prefix`` methods return a prefix ending in ``/`` for ``range``/``watch``."""

    def __init__(self, cluster: str) -> None:
        self.cluster = check_name("cluster", cluster)
        self.root = f"/corral/{cluster}/"

    def _k(self, *parts: str) -> bytes:
        return (self.root + "/".join(parts)).encode()

    @property
    def root_prefix(self) -> bytes:
        return self.root.encode()

    @property
    def spec(self) -> bytes:
        return self._k("spec")

    @property
    def controller(self) -> bytes:
        return self._k("controller")

    def node(self, node: str) -> bytes:
        return self._k("nodes", check_name("node", node))

    def nodes(self) -> bytes:
        """Prefix of every node registration."""
        return self._k("nodes", "")

    def assign(self, resource: str) -> bytes:
        return self._k("assign", check_name("resource", resource))

    def status(self, node: str, resource: str) -> bytes:
        return self._k("status", check_name("node", node), check_name("resource", resource))

    def status_prefix(self, node: str) -> bytes:
        return self._k("status", check_name("node", node), "")

    def admin(self, *parts: str) -> bytes:
        """``admin/<part>/...``, e.g. ``admin("maintenance", "ctl1", "galera")``."""
        if not parts:
            raise ValueError("admin key needs at least one part")
        return self._k("admin", *(check_name("admin key", p) for p in parts))

    def failcount(self, node: str, resource: str) -> bytes:
        return self._k("failcounts", check_name("node", node), check_name("resource", resource))

    def event_key(self, time_ns: int, node: str) -> bytes:
        """``events/<time_ns:020d>-<node>``: fixed width, so key order is time order."""
        if time_ns < 0:
            raise ValueError("event times are not negative")
        return self._k("events", f"{time_ns:020d}-{check_name('node', node)}")

    def members(self, node: str) -> bytes:
        """``members/<node>``: that node's gossip view of the cluster (under its lease)."""
        return self._k("members", check_name("node", node))

    def fenced(self, node: str) -> bytes:
        """``fenced/<node>``: ``{"revision": create revision of the fenced registration}``."""
        return self._k("fenced", check_name("node", node))

    def lb(self, node: str) -> bytes:
        """``lb/<node>``: the backend server states this node's HAProxy runs (under its lease)."""
        return self._k("lb", check_name("node", node))

    def request(self, node: str, resource: str) -> bytes:
        """``requests/<node>/<resource>``: an operator request for one agent."""
        return self._k("requests", check_name("node", node), check_name("resource", resource))

    def systemic(self, resource: str) -> bytes:
        """``systemic/<resource>``: the announced systemic episode of a resource."""
        return self._k("systemic", check_name("resource", resource))

    @property
    def gossip_key(self) -> bytes:
        """The cluster's gossip encryption keyring (base64 keys, one per line)."""
        return self._k("gossip-key")

    def key_ack(self, node: str) -> bytes:
        """``keys/ack/<node>``: the gossip keyring version that node applied (leased)."""
        return self._k("keys", "ack", check_name("node", node))

    def key_acks(self) -> bytes:
        """Prefix of every node's keyring acknowledgement."""
        return self._k("keys", "ack", "")

    @property
    def key_rotation(self) -> bytes:
        """``keys/rotation``: the gossip key rotation under way, or the last one."""
        return self._k("keys", "rotation")

    def token(self, token_id: str) -> bytes:
        """``auth/tokens/<id>``: one API token's salted hash and role (a secret)."""
        return self._k("auth", "tokens", check_name("token id", token_id))

    def tokens(self) -> bytes:
        """Prefix of every API token (the secret part of ``auth/``)."""
        return self._k("auth", "tokens", "")

    def user(self, name: str) -> bytes:
        """``auth/users/<name>``: a person's role (not a secret)."""
        return self._k("auth", "users", check_name("user", name))

    def users(self) -> bytes:
        """Prefix of every person's role record."""
        return self._k("auth", "users", "")

    def galera(self, resource: str) -> bytes:
        """``galera/<resource>/``: every Galera record of one resource (its reports, its
        bootstrap claim and its writer: :mod:`corral.records.galera`)."""
        return self._k("galera", check_name("resource", resource), "")

    def galera_report(self, resource: str, node: str) -> bytes:
        """``galera/<resource>/report/<node>``: that node's Galera state (under its lease)."""
        return self._k(
            "galera", check_name("resource", resource), "report", check_name("node", node)
        )

    def galera_reports(self, resource: str) -> bytes:
        """Prefix of every node's Galera report for ``resource``."""
        return self._k("galera", check_name("resource", resource), "report", "")

    def galera_bootstrap(self, resource: str) -> bytes:
        """``galera/<resource>/bootstrap``: the bootstrap claim (DESIGN rule 6)."""
        return self._k("galera", check_name("resource", resource), "bootstrap")

    def galera_writer(self, resource: str) -> bytes:
        """``galera/<resource>/writer``: the node every HAProxy sends writes to."""
        return self._k("galera", check_name("resource", resource), "writer")

    @property
    def alert_cursor(self) -> bytes:
        return self._k("alerts", "cursor")

    @property
    def alert_nodes(self) -> bytes:
        """``alerts/nodes``: each node's state as the controller's node events last said it
        (a new controller compares against it, so no change goes unsaid over a handover)."""
        return self._k("alerts", "nodes")

    def alert_duty(self, sink: str, event_id: str) -> bytes:
        """``alerts/duty/<sink>/<event>``; ``event_id`` is an event key's last part."""
        return self._k("alerts", "duty", check_name("alert sink", sink), event_id)

    def alert_log(self, sink: str, event_id: str) -> bytes:
        return self._k("alerts", "log", check_name("alert sink", sink), event_id)

    def event_prefix(self) -> bytes:
        return self._k("events", "")

    def prefix(self, section: str) -> bytes:
        """``<section>/`` for ``nodes``, ``assign``, ``status``, ``admin``, ``failcounts`` or
        ``events``."""
        if section not in SECTIONS:
            raise ValueError(f"unknown store section {section!r}: one of {', '.join(SECTIONS)}")
        return self._k(section, "")

    def relative(self, key: bytes) -> list[str]:
        """The parts of ``key`` below the cluster root (``b"/corral/c/status/n1/web"`` ->
        ``["status", "n1", "web"]``); ``ValueError`` for a key of another cluster."""
        text = key.decode(errors="replace")
        if not text.startswith(self.root):
            raise ValueError(f"{text!r} is not a key of cluster {self.cluster!r}")
        return text[len(self.root) :].split("/")
