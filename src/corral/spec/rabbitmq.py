"""The ``rabbitmq:`` resource kind: one RabbitMQ cluster, one broker per node (spec model).

Contract:

- A rabbitmq resource is promotable: an unpromoted instance is a stopped broker whose state
  is reported to the store (``rabbitmq/<res>/report/<node>``); a promoted one is a running
  broker. Every instance is promoted (``promoted`` defaults to the number of instances); the
  controller holds a promotion back while the node's decision is to wait
  (:mod:`corral.core.rabbit.gate`), so a broker never starts out of order.
- The Erlang node is ``rabbit@<node>``: each node's name must resolve to its address on
  every node (``/etc/hosts``), as RabbitMQ requires.
- Secrets by reference only (:mod:`corral.spec.secrets`): ``erlang_cookie`` (required: every
  node must share it) and ``password`` (of ``user``, the account the health check and
  clients use; without it the node keeps RabbitMQ's ``guest``, loopback only).
- ``force_boot_after``: how long the controller waits for gone members of the last-running
  set before one node force-boots (:data:`corral.core.rabbit.DEFAULT_FORCE_BOOT_AFTER`);
  ``forget_fenced_after``: forget a member fenced this long ago (default: never).
"""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from corral.core.rabbit import DEFAULT_FORCE_BOOT_AFTER
from corral.spec.durations import Duration
from corral.spec.paths import BaseDir
from corral.spec.secrets import RabbitmqSecrets, SecretRef

_USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


class RabbitmqSpec(RabbitmqSecrets):
    """One RabbitMQ broker per eligible node (see the module contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base_dir: BaseDir = Field(
        default="/var/lib/corral/rabbitmq",
        description="the broker's own directory on each node: mnesia/, log/, rabbitmq.conf; "
        "may hold {node.name} (nodes that share one filesystem)",
    )
    amqp_port: int = Field(default=5672, ge=1, le=65535, description="AMQP port on the address")
    dist_port: int = Field(default=25672, ge=1, le=65535, description="Erlang distribution port")
    user: str = Field(default="corral", description="the account a fresh node creates")
    password: SecretRef | None = None
    force_boot_after: Duration = Field(
        default=DEFAULT_FORCE_BOOT_AFTER,
        description="wait for gone last-running members before one node force-boots",
    )
    forget_fenced_after: Duration | None = Field(
        default=None, description="forget a member fenced this long ago (default: never)"
    )

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError(f"{value!r}: a user name is 1-64 letters, digits or _ . -")
        return value
