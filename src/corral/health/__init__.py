"""Functional health checks (shell): http, tcp, exec with Nagios plugin semantics.

- :mod:`corral.health.checks`: run one check (:class:`Checker`, :func:`run_check`).
- :mod:`corral.health.monitor`: run an instance's checks on their schedule and report changes
  of its health (:class:`Monitor`).
- :mod:`corral.health.nagios`: the same checks as a Nagios/Sensu plugin (:func:`check_once`).

The verdicts themselves (rise, fall, grace) are pure: :mod:`corral.core.health`.
"""

from corral.health.checks import Checker, run_check
from corral.health.monitor import CheckLoop, Monitor
from corral.health.nagios import check_all, check_once

__all__ = ["CheckLoop", "Checker", "Monitor", "check_all", "check_once", "run_check"]
