"""A node for the agent core's transcripts: the shell's part, in virtual time.

It does what :mod:`corral.agent.node` and :mod:`corral.agent.actuator` do with the core's
effects, with services that run in memory: a start succeeds unless the transcript made it
fail, a stop always works, a failure count is a number. Time passes only through
``advance``, which wakes the core exactly when the shell would (the rule-1 deadline while
something exclusive runs, a round the core asked for) and prints what happened then.

Commands (one per block; times in seconds, printed as ``t=…``):

- ``register [continuous]``: a new lease and registration (``continuous``: it replaced the
  previous one with no lapse, as an agent restarted within its lease does).
- ``renewals on|off``: the keepalive loop renews every 0.5 s during ``advance`` (or not).
- ``freeze DURATION`` / ``wake``: the agent is frozen (nothing of it runs) / its main loop
  wakes again.
- ``slow-stop KEY DURATION``: the next stop of KEY takes that long (a drain).
- ``renew [late]``: a renewal sent and answered now (``late``: the agent stalled in it, and it
  came back at the keep deadline; the lease guard may have stopped exclusive instances).
- ``lease-lost``: etcd says the lease is gone.
- ``advance DURATION``: let time pass; every wake-up of the shell in between runs the
  self-fence check (and a round if the core asked for one), printing its effects.
- ``assign KEY=ROLE ...`` / ``assign -``: what the controller assigns this registration.
- ``maintenance RES ...`` / ``maintenance -``: resources in maintenance here.
- ``round``: one round: the core's effects, carried out.
- ``adopt KEY``: a service found running at start (left by the previous agent).
- ``dies KEY`` / ``unhealthy KEY`` / ``guard-stopped KEY [recorded]``: what a driver poll or
  the checks find (``guard-stopped``: the lease guard stopped it while the agent renewed
  late; ``recorded``: the guard's own record of the stop says so, ``guard.stopped``).
- ``fail-start KEY error|node TEXT``: the next start of KEY fails (``node``: refused for a
  node-level reason).
- ``request KEY restart|bogus``: an operator request for KEY.
- ``keep DURATION``: a proof round found the store leaderless: keep that long past the deadline.
- ``show``: lease, deadlines, what runs, failure counts, the next round asked for.
"""

from __future__ import annotations

import math
import shlex

from corral.core.agent.core import AgentCore
from corral.core.agent.effects import (
    CountFailure,
    Demote,
    Effect,
    Event,
    Note,
    Promote,
    Restart,
    Start,
    Stop,
)
from corral.core.reconcile import LocalInstance
from corral.spec import load_spec_text

SPEC = """
cluster: t
timing: {lease_ttl: 3s, keepalive_interval: 0.5s, safety_margin: 0.5s}
store: {etcd: {endpoints: ['http://127.0.0.1:1']}}
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
resources:
  vips: {vip-set: [198.18.0.100/24]}
  haproxy: {haproxy: {stats_port: 8404}}
  web: {process: /bin/web}
  api: {process: /bin/api, balance: {port: 8080, via: vips}}
  ap: {process: /bin/ap, mode: active-passive}
  db: {process: /bin/db, mode: promotable, promoted: 1}
order:
  - ap -> web
"""


class AgentNode:
    def __init__(self) -> None:
        self.spec = load_spec_text(SPEC, "transcript")
        self.core = AgentCore(self.spec, "n1")
        self.now = 0.0
        self.keep_extension = 0.0  # a proof that the store has no leader: keep this long
        self.running: dict[str, LocalInstance] = {}
        self.started_at: dict[str, float] = {}
        self.desired: dict[str, str] = {}
        self.frozen: set[str] = set()
        self.failcounts: dict[str, int] = {}
        self.fail_next: dict[str, tuple[str, str]] = {}
        self.registrations = 0
        self.renewing = False  # the keepalive loop renews every interval during ``advance``
        self.next_renewal = math.inf
        self.stop_takes: dict[str, float] = {}

    # --- the shell's part -----------------------------------------------------------------

    def keep_deadline(self) -> float:
        return self.core.lease.deadline() + self.keep_extension

    def carry_out(self, effects: list[Effect]) -> list[str]:
        out: list[str] = []
        for effect in effects:
            out += self._one(effect)
        return out

    def _one(self, effect: Effect) -> list[str]:
        if isinstance(effect, Stop):
            drain = ", drained" if effect.why.drain else ""
            return self._stop(effect.key, f"{effect.why.text}{drain}")
        if isinstance(effect, Start):
            return self._start(effect.key, effect.why.text)
        if isinstance(effect, Restart):
            return [*self._stop(effect.key, "restart"), *self._start(effect.key, "restart")]
        if isinstance(effect, Promote | Demote):
            promoted = isinstance(effect, Promote)
            self.running[effect.key] = LocalInstance(
                role="promoted" if promoted else "started", health="healthy"
            )
            return [f"{type(effect).__name__.lower()} {effect.key}: {effect.why.text}"]
        if isinstance(effect, CountFailure):
            self.failcounts[effect.resource] = self.failcounts.get(effect.resource, 0) + 1
            count = self.failcounts[effect.resource]
            return [f"count failure of {effect.resource} (now {count}): {effect.reason}"]
        if isinstance(effect, Event):
            return [f"event {effect.kind}: {effect.text}"]
        assert isinstance(effect, Note)
        return [f"note: {effect.text}"]

    def _stop(self, key: str, why: str) -> list[str]:
        if self.running.pop(key, None) is None:
            return []
        took = self.stop_takes.pop(key, 0.0)
        self.now += took  # a slow stop (a drain, a service slow to exit) takes the round's time
        return [f"stop {key} ({why}){f', took {took:g}s' if took else ''}"]

    def _start(self, key: str, why: str) -> list[str]:
        refused = self.core.may_start(key, self.now)
        if refused is not None:
            return [f"note: {refused.text}"]
        if key in self.fail_next:
            how, text = self.fail_next.pop(key)
            if how == "node":
                return self.carry_out(self.core.start_refused(key, text, self.now))
            return self.carry_out(self.core.start_failed(key, text, self.now, self.now))
        self.core.started(key)
        self.running[key] = LocalInstance(health="healthy")
        self.started_at[key] = self.now
        return [f"start {key} ({why})"]

    def wake_ups(self, until: float) -> list[float]:
        """The instants the shell wakes at before ``until``: the main loop's (the rule-1
        deadline while something exclusive runs, a round the core asked for) and, while
        renewals run, the keepalive loop's."""
        fence = self.core.fence_deadline(self.now, self.running, self.keep_deadline(), 0.1)
        renewal = self.next_renewal if self.renewing else math.inf
        return [t for t in (fence, self.core.wake_at, renewal) if self.now < t <= until]

    # --- commands -------------------------------------------------------------------------

    def execute(self, line: str) -> str:
        words = shlex.split(line)
        handler = getattr(self, "cmd_" + words[0].replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {words[0]!r}")
        out = handler(*words[1:])
        return "\n".join(out) if out else "ok"

    def cmd_register(self, *how: str) -> list[str]:
        previous = self.core.lease.registration
        self.registrations += 1
        registration = 100 * self.registrations
        replaced = previous if "continuous" in how else None
        self.core.lease.registered(self.registrations, registration, self.now, replaced)
        return [f"registered r{registration} at t={self.now:.2f}; {self._deadlines()}"]

    def cmd_renew(self, *how: str) -> list[str]:
        if self.core.lease.lease is None:
            return ["no lease to renew"]
        sent = self.now
        if "late" in how:  # the agent stalled in the renewal: it comes back after the deadline
            self.now = max(self.now, self.keep_deadline())
        late = self.core.lease.renewed(sent, self.now, self.keep_deadline())
        return [f"t={self.now:.2f} renewed{' late' if late else ''}; {self._deadlines()}"]

    def cmd_lease_lost(self) -> list[str]:
        return self.carry_out([self.core.lease_lost(self.running)])

    def cmd_advance(self, duration: str) -> list[str]:
        until = self.now + float(duration.rstrip("s"))
        out: list[str] = []
        while wake := self.wake_ups(until):
            self.now = min(wake)
            if self.renewing and self.now >= self.next_renewal:
                self.core.lease.renewed(self.now, self.now, self.keep_deadline())
                self.next_renewal = self.now + self.spec.effective_timing.keepalive_interval
            lines = self._self_fence()
            if self.now >= self.core.wake_at:
                self.core.take_wake()
                lines += self._round()
            out += [f"t={self.now:.2f} {line}" for line in lines]
        self.now = until
        return [*out, f"t={self.now:.2f}"]

    def cmd_freeze(self, duration: str) -> list[str]:
        """The agent is frozen (SIGSTOP, starved): time passes and none of its loops runs."""
        self.now += float(duration.rstrip("s"))
        self.next_renewal = self.now + self.spec.effective_timing.keepalive_interval
        return [f"t={self.now:.2f}"]

    def cmd_wake(self) -> list[str]:
        """The main loop wakes (after a freeze every timer is due): the self-fence check."""
        return self._self_fence() or ["nothing to do"]

    def cmd_renewals(self, state: str) -> list[str]:
        """``on``: the keepalive loop renews every ``keepalive_interval`` (0.5 s) from now."""
        self.renewing = state == "on"
        interval = self.spec.effective_timing.keepalive_interval
        self.next_renewal = self.now + interval if self.renewing else math.inf
        return []

    def cmd_slow_stop(self, key: str, duration: str) -> list[str]:
        self.stop_takes[key] = float(duration.rstrip("s"))
        return []

    def _self_fence(self) -> list[str]:
        return self.carry_out(
            list(self.core.self_fence(self.now, self.running, self.keep_deadline()))
        )

    def _round(self) -> list[str]:
        effects = self.core.round(
            self.now, self.desired, self.frozen, self.running, self.keep_deadline()
        )
        return self.carry_out(effects)

    def cmd_assign(self, *pairs: str) -> list[str]:
        self.desired = {} if pairs == ("-",) else dict(p.split("=", 1) for p in pairs)
        return []

    def cmd_maintenance(self, *names: str) -> list[str]:
        self.frozen = set() if names == ("-",) else set(names)
        return []

    def cmd_round(self) -> list[str]:
        return [*self._self_fence(), *self._round()] or ["nothing to do"]

    def cmd_adopt(self, key: str) -> list[str]:
        self.running[key] = LocalInstance(health="healthy")
        self.started_at[key] = self.now
        self.core.adopted.add(key)
        return [f"adopted {key}"]

    def cmd_dies(self, key: str) -> list[str]:
        self.running[key] = LocalInstance(health="healthy", failed=True)
        return []

    def cmd_unhealthy(self, key: str) -> list[str]:
        self.running[key] = LocalInstance(health="unhealthy")
        return []

    def cmd_guard_stopped(self, key: str, recorded: str = "") -> list[str]:
        """The driver poll finds ``key`` not running: the core says whose event it is
        (``recorded``: the guard's record says it stopped ``key`` now)."""
        by_guard = self.now if recorded == "recorded" else None
        if self.core.stopped_by_guard(key, self.started_at.get(key, -math.inf), by_guard):
            self.running.pop(key, None)
            return [f"{key} was stopped by the lease guard: started again as assigned, not counted"]
        self.running[key] = LocalInstance(health="healthy", failed=True)
        return [f"{key} failed: the next round restarts it and counts it"]

    def cmd_fail_start(self, key: str, how: str, *text: str) -> list[str]:
        self.fail_next[key] = (how, " ".join(text))
        return []

    def cmd_keep(self, seconds: str) -> list[str]:
        """A proof round found no store member with a leader: keep past the deadline."""
        self.keep_extension = float(seconds.rstrip("s"))
        return [self._deadlines()]

    def cmd_request(self, key: str, action: str) -> list[str]:
        plan = self.core.request(key, action == "restart", self.frozen, set(self.running))
        out: list[str] = []
        if plan.stop is not None:
            out += self.carry_out([plan.stop])
        if plan.event is not None:
            out += self.carry_out([plan.event])
        return [*out, "request deleted"]

    def cmd_show(self) -> list[str]:
        running = ", ".join(
            f"{k}({i.role}{', failed' if i.failed else ''}{', ' + i.health if i.health != 'healthy' else ''})"
            for k, i in sorted(self.running.items())
        )
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.failcounts.items()))
        wake = "-" if self.core.wake_at == math.inf else f"t={self.core.wake_at:.2f}"
        return [
            f"t={self.now:.2f} lease={'yes' if self.core.lease.lease else 'no'}; {self._deadlines()}",
            f"running: {running or '-'}",
            f"adopted: {', '.join(sorted(self.core.adopted)) or '-'}",
            f"failcounts: {counts or '-'}",
            f"round asked for: {wake}",
        ]

    def _deadlines(self) -> str:
        lease = self.core.lease
        hold = "yes" if lease.may_hold(self.now) else "no"
        keep = "yes" if lease.may_keep(self.now, self.keep_deadline()) else "no"
        deadline = lease.deadline()
        when = f"t={deadline:.2f}" if deadline > -math.inf else "-"
        return f"rule-1 deadline {when}; may start exclusive: {hold}; may keep: {keep}"
