"""The operators' actions, one layer for the CLI and the HTTP API: each builder checks its
arguments against the spec (:class:`ActionError` names the one that is wrong) and returns an
:class:`Action` (what the audit says, the store work, the role it needs). The CLI runs it under
its identity (:func:`corral.cli.audit.run_audited`), the API under the caller's token
(:mod:`corral.api.actions`); both write one audit event per action
(:func:`corral.auth.audit.audited`).
"""

from corral.actions.admin import (
    Action,
    ActionError,
    ActionFailed,
    ban,
    cleanup,
    maintenance,
    move,
    spec_push,
    standby,
)
from corral.actions.alerts import alert_test
from corral.actions.restart import restart

__all__ = [
    "Action",
    "ActionError",
    "ActionFailed",
    "alert_test",
    "ban",
    "cleanup",
    "maintenance",
    "move",
    "restart",
    "spec_push",
    "standby",
]
