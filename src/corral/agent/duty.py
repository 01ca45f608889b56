"""This agent's part in the controller election (shell): replace a dead controller, campaign
for the key at most once a second (at once when the key is deleted), and step while it holds
it (:class:`~corral.agent.controller.Controller` does each)."""

from __future__ import annotations

import math

from corral.agent.controller import Controller
from corral.agent.events import EventLog
from corral.core.clock import Clock

CAMPAIGN_EVERY = 1.0  # seconds between campaigns while another agent holds the key


class ControllerDuty:
    def __init__(self, controller: Controller, clock: Clock, events: EventLog) -> None:
        self.controller, self.clock, self.events = controller, clock, events
        self._last_campaign = -math.inf

    def key_changed(self, key: bytes, revision: int | None) -> None:
        """The watch saw the controller key made (``revision``) or deleted (None)."""
        if revision is None:  # deleted: campaign at once
            self._last_campaign = -math.inf
        else:  # made once per term: a creation, seen when made, not when its holder dies
            self.controller.noticed(key, revision)

    async def run(self, lease: int) -> None:
        """One round's duty under ``lease``."""
        controller = self.controller
        if not controller.active:
            replaced = await controller.replace_dead()
            if replaced is not None:
                self.events.decide(replaced)
                self._last_campaign = -math.inf
        now = self.clock.now()
        if not controller.active and now - self._last_campaign > CAMPAIGN_EVERY:
            self._last_campaign = now
            await controller.campaign(lease)
        if controller.active:
            try:
                self.events.decide(await controller.step())
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # a record of a shape the scheduler cannot read: say so, and let the local
                # work (reconcile, reports) go on
                await self.events.event("controller", f"cannot plan: a malformed record? {exc!r}")
