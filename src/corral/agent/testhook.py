"""A test hook: ``CORRAL_TEST_STALL_FILE`` names a path whose existence stalls the agent.

While the file exists, the agent's main loop blocks its event loop in a synchronous sleep:
the hung agent that the systemd watchdog must catch (tests/hosts/test_unit.py). It blocks
every control loop of the agent, as a real hang would (a blocking call, a spin). Unset (as
in production) it costs one dictionary lookup per main-loop iteration.
"""

from __future__ import annotations

import logging
import os
import time

VARIABLE = "CORRAL_TEST_STALL_FILE"
log = logging.getLogger(__name__)


def stall_if_asked() -> None:
    path = os.environ.get(VARIABLE)
    if not path or not os.path.exists(path):
        return
    log.warning("stalling: %s exists (%s)", path, VARIABLE)
    while os.path.exists(path):
        time.sleep(0.1)  # blocking on purpose: this is the hang under test
