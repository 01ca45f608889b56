"""A three-node RabbitMQ lab in network namespaces (198.18.70.0/24), for the real-server tests.

``PREFIX``, ``SWITCH`` and ``SUBNET`` are module settings: a user that may run beside another
lab (the wired test, the bench) sets its own before :func:`rabbit_lab`.

```
  crb-a 198.18.70.1      crb-b 198.18.70.2      crb-c 198.18.70.3
        \\                      |                      /
         crb-ap ──────────── crb-br ──────────── crb-cp        (namespace crb-sw)
```

Each node namespace has ``/etc/netns/<ns>/hosts`` naming every node, its own epmd and broker
(:class:`corral.drivers.rabbitmq.RabbitServer`). :func:`rabbit_lab` tears everything down in
``finally`` (brokers and epmds by pid, then any process left in the lab's own namespaces,
the namespaces, the hosts files), also after a failed test, and first removes what a killed
earlier run left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from corral.drivers.rabbitmq import (
    BrokerConfig,
    RabbitServer,
    remove_netns_hosts,
    write_netns_hosts,
)
from corral.drivers.rabbitmq_health import AmqpCheck, amqp_connect
from corral.lab import netns
from corral.spec.secrets import SecretRef

PREFIX = "crb-"
SWITCH = "crb-sw"
BRIDGE = "crb-br"
SUBNET = "198.18.70"  # a /24
NODES = ("a", "b", "c")
USER = "corral"


def address(node: str) -> str:
    return f"{SUBNET}.{NODES.index(node) + 1}"


def _namespaces() -> list[str]:
    return [SWITCH, *(PREFIX + n for n in NODES)]


def teardown_namespaces() -> None:
    """Kill every process left in the lab's namespaces (ours: the lab made them), then
    delete them and their hosts files."""
    netns.remove_all(_namespaces())
    for ns in _namespaces():
        remove_netns_hosts(ns)


def setup_namespaces() -> None:
    netns.add_star(SWITCH, BRIDGE, {
        PREFIX + n: (f"crb-{n}p", "eth0", f"{address(n)}/24") for n in NODES
    })  # fmt: skip
    for node in NODES:
        write_netns_hosts(PREFIX + node, {n: address(n) for n in NODES})


@dataclass
class RabbitLab:
    """The lab's brokers (by node) and the AMQP password; corral's wired path drives them
    (``tests/rabbit_wire/agents.py``)."""

    servers: dict[str, RabbitServer]
    password: str

    def check(self, node: str, timeout: float = 2.0) -> AmqpCheck:
        return AmqpCheck(
            address(node), user=USER, password=self.password, timeout=timeout, netns=PREFIX + node
        )

    async def connect(self, node: str) -> aio_pika.abc.AbstractConnection:
        """A client connection to ``node`` from inside its namespace (nothing leaves the lab)."""
        return await amqp_connect(address(node), 5672, USER, self.password, 5.0, PREFIX + node)


@contextlib.asynccontextmanager
async def rabbit_lab(base: Path, net_ticktime: int = 10) -> AsyncIterator[RabbitLab]:
    """The lab under ``base``; ``net_ticktime``: the brokers' (10 s: the test's; the bench
    passes the timing profile's, :func:`corral.drivers.rabbitmq.net_ticktime`)."""
    teardown_namespaces()
    cookie = base / "cookie"
    fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16).upper())
    pw_file = base / "password"
    password = secrets.token_hex(8)
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    servers: dict[str, RabbitServer] = {}
    try:
        setup_namespaces()
        for node in NODES:
            config = BrokerConfig(
                node,
                address(node),
                base / node,
                SecretRef(file=str(cookie)),
                net_ticktime=net_ticktime,
                netns=PREFIX + node,
                user=USER,
                password=SecretRef(file=str(pw_file)),
            )
            servers[node] = RabbitServer(config)
            await servers[node].prepare()
        yield RabbitLab(servers, password)
    finally:
        for server in servers.values():
            with contextlib.suppress(Exception):
                await server.close()
        teardown_namespaces()
