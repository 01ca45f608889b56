"""Functional health checks (shell): http, tcp, exec with Nagios plugin semantics.

- :mod:`corral.health.checks`: run one check (:class:`Checker`, :func:`run_check`).
- :mod:`corral.health.nagios`: the same checks as a Nagios/Sensu plugin (:func:`check_once`).

The verdicts (rise, fall, grace) are pure: :mod:`corral.core.health`. The schedule that runs an
instance's checks is the agent's (:mod:`corral.agent.instances`).
"""

from corral.health.checks import Checker, run_check
from corral.health.nagios import check_all, check_once

__all__ = ["Checker", "check_all", "check_once", "run_check"]
