"""Timing profiles: every timing default of corral, derived from a few base figures.

Formulas (why each default is what it is):

- etcd: ``election_timeout = 10 x heartbeat_interval`` (etcd's own guidance: 5-10 round trips);
  etcd grants no lease shorter than ``1.5 x election_timeout``.
- ``lease_ttl = 50/11 x election_timeout`` (rounded up to whole seconds, as etcd grants them,
  at least 1 s): the node lease.
  It must outlast an etcd leader election: when the leader dies no keepalive succeeds until a
  new one is elected, which takes up to ``2 x election_timeout`` (etcd randomises the timeout
  up to twice its value). An agent self-fences after ``lease_ttl - safety_margin`` without a
  renewal, and its last renewal may be a whole ``keepalive_interval`` older than the leader's
  death, so ``lease_ttl x (1 - 1/4 - 1/5) >= 2 x election_timeout x 1.25``: losing the etcd
  leader must not make every node drop its VIPs. (Until the chaos harness, the formula left the
  keepalive interval out: ``10/3 x election``, a 2 s lan lease; powering off the node of the
  etcd leader made the healthy nodes self-fence, every VIP down for ~2 s.) etcd itself grants
  no lease below ``1.5 x election``.
  An exclusive instance moves through lease expiry no sooner than ``lease_ttl`` (+ up to 0.5 s,
  etcd's expiry check period) after the holder's last keepalive (safety rule 2); the fast
  path (gossip + fence device) does not wait for it.
- ``keepalive_interval = lease_ttl / 5``: several renewals fit in one TTL, so one lost keepalive
  does not cost the lease; a failed renewal is tried again on the next tick of the agent's timer
  grid, not a whole interval later. (``/ 4`` would save an idle agent ~0.05 % of a core; with it
  the loopback cluster tests that lose an etcd member failed now and then, so not done.)
- ``safety_margin = lease_ttl / 4``: an agent that has not renewed its lease for
  ``lease_ttl - safety_margin`` stops its exclusive instances and drops its VIPs (rule 1), which
  leaves ``safety_margin`` for the stop to finish before anyone else may take over.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.spec.durations import Duration

ProfileName = Literal["lan", "wan", "local"]


class Timing(BaseModel):
    """Resolved timing of a cluster (all seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    etcd_heartbeat: Duration = Field(description="etcd --heartbeat-interval")
    etcd_election: Duration = Field(description="etcd --election-timeout, 10 x heartbeat")
    lease_ttl: Duration = Field(description="node lease TTL, 50/11 x etcd_election, whole seconds")
    keepalive_interval: Duration = Field(description="lease renewal period, lease_ttl / 5")
    safety_margin: Duration = Field(description="self-fence this long before expiry, ttl / 4")


class TimingOverrides(BaseModel):
    """Per-field overrides of a profile, as written in the spec's ``timing:`` mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    etcd_heartbeat: Duration | None = None
    etcd_election: Duration | None = None
    lease_ttl: Duration | None = None
    keepalive_interval: Duration | None = None
    safety_margin: Duration | None = None


_BASE_HEARTBEAT: dict[str, float] = {"local": 0.025, "lan": 0.05, "wan": 0.25}


def profile_timing(profile: ProfileName) -> Timing:
    """The defaults of ``profile``, derived from its etcd heartbeat by the formulas above."""
    heartbeat = _BASE_HEARTBEAT[profile]
    election = 10 * heartbeat
    # Whole seconds: etcd's lease TTLs are (the agent asks for the ceiling anyway).
    lease = max(1.0, float(math.ceil(election * 50 / 11 - 1e-9)))
    return Timing(
        etcd_heartbeat=heartbeat,
        etcd_election=election,
        lease_ttl=lease,
        keepalive_interval=lease / 5,
        safety_margin=lease / 4,
    )


def resolve_timing(profile: ProfileName, overrides: TimingOverrides) -> Timing:
    """``profile``'s defaults with ``overrides`` applied (no consistency check: see checks)."""
    base = profile_timing(profile).model_dump()
    base.update({k: v for k, v in overrides.model_dump().items() if v is not None})
    return Timing(**base)
