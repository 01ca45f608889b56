"""RabbitMQ's bootstrap and recovery decisions (pure): see :mod:`.decide` for the rules and
:mod:`.state` for the inputs."""

from corral.core.rabbit.decide import (
    DEFAULT_FORCE_BOOT_AFTER,
    Action,
    Cluster,
    Decision,
    Plan,
    Policy,
    decide,
    replaced,
)
from corral.core.rabbit.state import (
    BrokerState,
    ForceBootClaim,
    NodeReport,
    RunRecord,
    corral_name,
    erlang_name,
    erlang_nodes,
)

__all__ = [
    "DEFAULT_FORCE_BOOT_AFTER",
    "Action",
    "BrokerState",
    "Cluster",
    "Decision",
    "ForceBootClaim",
    "NodeReport",
    "Plan",
    "Policy",
    "RunRecord",
    "corral_name",
    "decide",
    "erlang_name",
    "erlang_nodes",
    "replaced",
]
