"""``alerts:``: where the cluster's changes are sent (:mod:`corral.core.alerts` decides).

Each entry is a *sink*: exactly one of ``exec`` (an alert agent run with Pacemaker's
``CRM_alert_*`` environment, so Pacemaker's own agents work unchanged) or ``webhook`` (a JSON
POST, retried with exponential backoff, at least once, with a dedup id), and filters that
all must hold for an alert to reach it (an empty filter lets everything through):

- ``kinds``: Pacemaker's alert kinds (``node``, ``fencing``, ``resource``, ``attribute``);
- ``resources``, ``nodes``: names (a resource alert's resource, the node an alert is about);
- ``severity``: the least severity sent (``info`` < ``warning`` < ``critical``).

``attempts``: the tries of one alert; an ``exec`` sink tries once by default (Pacemaker's
fire-and-forget), a ``webhook`` ten times. The wait before try ``n + 1`` is
``backoff x 2^(n-1)``, at most ``max_backoff``. ``timeout``: an agent still running then is
killed (with its process group), a POST not answered then failed; 30 s like Pacemaker.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.spec.durations import Duration

AlertKind = Literal["node", "fencing", "resource", "attribute"]
Severity = Literal["info", "warning", "critical"]
ALERT_KINDS: tuple[AlertKind, ...] = ("node", "fencing", "resource", "attribute")
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


class AlertSink(BaseModel):
    """One sink of ``alerts:`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    exec: str | None = Field(default=None, description="an alert agent (path or command line)")
    webhook: str | None = Field(default=None, description="an http:// or https:// URL")
    recipient: str = Field(default="", description="CRM_alert_recipient (e.g. a file)")
    kinds: list[AlertKind] = Field(default=list(ALERT_KINDS), min_length=1)
    resources: list[str] = []
    nodes: list[str] = []
    severity: Severity = "info"
    timeout: Duration = Field(default=30.0, gt=0)
    attempts: int | None = Field(default=None, ge=1, le=1000)
    backoff: Duration = Field(default=1.0, gt=0)
    max_backoff: Duration = Field(default=60.0, gt=0)

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook is an http:// or https:// URL with a host, not {value!r}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> AlertSink:
        if (self.exec is None) == (self.webhook is None):
            raise ValueError("a sink has exactly one of 'exec' (an alert agent) or 'webhook'")
        if self.exec is not None and not self.exec.strip():
            raise ValueError("'exec' names an alert agent, not an empty string")
        return self

    @property
    def tries(self) -> int:
        """How many times one alert is tried (the default depends on the sink's type)."""
        if self.attempts is not None:
            return self.attempts
        return 1 if self.exec is not None else 10
