"""A small command language over the simulator, for data-driven scenario tests.

Each command returns text; the tests compare it with a recorded transcript (see
``corral.sim.datadriven``). Time-advancing commands print the *news* they saw: one line per
``(member, state, incarnation)`` that some node adopted, with how many nodes adopted it and when,
which stays readable for 5 nodes or 500.

Commands (durations like ``250ms`` / ``3s``, loss like ``10%``)::

    cluster [seed=1] [profile=lan] [lifeguard=on|off] [loss=0%] [latency=0.5ms]
    add-nodes COUNT [join=NAME|bootstrap] [prefix=n]
    crash NAME | restart NAME [join=SEED] | leave NAME
    stall NAME DURATION
    slow NAME for=DURATION [delay=LOW..HIGH]
    partition A,B C,D,E      # groups; unlisted nodes form one more group
    heal
    loss PERCENT [A B]       # every link, or A<->B only
    run DURATION [quiet]     # quiet: count the news instead of listing it
    expect all-see NAME STATE within=DURATION [by=A,B]  # every running node (or A, B)
    expect converged within=DURATION
    expect no-false-dead for=DURATION [except=A,B] [quiet]   # no running node declared dead
    members NAME
    stats

``expect`` raises :class:`ScenarioFailure` when its condition does not hold in time.
"""

from __future__ import annotations

from collections.abc import Callable

from corral.core.membership import MemberChanged, MemberState
from corral.core.membership import profile as membership_profile
from corral.sim.network import Latency
from corral.sim.simulator import Simulator


class ScenarioFailure(AssertionError):
    """An ``expect`` did not hold; the message says what was seen instead."""


def parse_duration(text: str) -> float:
    """``250ms`` -> 0.25, ``3s`` -> 3.0, ``1m`` -> 60.0; a bare number is seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def parse_percent(text: str) -> float:
    return float(text.rstrip("%")) / 100.0


class _News:
    """Changes seen during one command, aggregated per (member, state, incarnation)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.rows: dict[tuple[str, MemberState, int], list[object]] = {}
        self.false_dead: list[str] = []

    def add(self, now: float, observer: str, change: MemberChanged) -> None:
        m = change.member
        key = (m.name, m.state, m.incarnation)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [now, observer, now, {observer}]
        else:
            row[2] = now
            row[3].add(observer)  # type: ignore[attr-defined]

    def summary(self) -> list[str]:
        """One line counting the news by state (for long, noisy runs)."""
        if not self.rows:
            return []
        counts: dict[str, int] = {}
        for _, state, _ in self.rows:
            counts[state.label] = counts.get(state.label, 0) + 1
        shown = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
        return [f"news (quiet): {shown}"]

    def render(self, observers: Callable[[str], int], quiet: bool = False) -> list[str]:
        if quiet:
            return self.summary()
        lines = []
        for (name, state, inc), (first, who, last, seen) in self.rows.items():
            assert isinstance(first, float) and isinstance(last, float)
            assert isinstance(seen, set)
            lines.append(
                f"{first - self.start:+.3f} {name} {state.label}@{inc}: "
                f"{len(seen)}/{observers(name)} nodes, first {who}, "
                f"last {last - self.start:+.3f}"
            )
        return lines


class Scenario:
    """Interprets commands against one simulator (created by ``cluster``)."""

    def __init__(self) -> None:
        self.sim: Simulator | None = None
        self._news: _News | None = None
        self._counter = 0
        self._false_dead = 0
        self._excused: set[str] = set()

    def execute(self, line: str) -> str:
        """Run one command line; return its output (``ok`` when it has nothing to say)."""
        words = line.split()
        if not words:
            return ""
        cmd, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + cmd.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {cmd!r}")
        pos = [a for a in args if "=" not in a]
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        out: str = handler(*pos, **kw)
        return out

    # ------------------------------------------------------------------ setup

    @property
    def _sim(self) -> Simulator:
        if self.sim is None:
            raise ValueError("no cluster: start with `cluster`")
        return self.sim

    def cmd_cluster(
        self,
        seed: str = "1",
        profile: str = "lan",
        lifeguard: str = "on",
        loss: str = "0%",
        latency: str = "0.5ms",
    ) -> str:
        mean = parse_duration(latency)
        cfg = membership_profile(profile, lifeguard=lifeguard == "on")
        sim = Simulator(int(seed), cfg, Latency(low=mean * 0.4, mean=mean), parse_percent(loss))
        sim.change_hooks.append(self._on_change)
        self.sim = sim
        self._counter = 0
        return "ok"

    def _on_change(self, now: float, observer: str, change: MemberChanged) -> None:
        if self._news is not None:
            self._news.add(now, observer, change)
        sim = self._sim
        m = change.member
        if m.state is MemberState.DEAD and change.source == observer:
            node = sim.nodes.get(m.name)
            live = node is not None and not node.crashed and not node.left
            if live and m.name not in self._excused:
                self._false_dead += 1

    def cmd_add_nodes(self, count: str, join: str = "", prefix: str = "n") -> str:
        sim = self._sim
        names = []
        for _ in range(int(count)):
            self._counter += 1
            names.append(f"{prefix}{self._counter}")
        if join == "bootstrap":
            sim.bootstrap(names)
            return f"bootstrapped {names[0]}..{names[-1]}"
        for name in names:
            seeds = [join] if join and join != name else []
            sim.add_node(name, seeds)
        return f"started {names[0]}..{names[-1]}" + (f", joining via {join}" if join else "")

    # ------------------------------------------------------------------ faults

    def cmd_crash(self, name: str) -> str:
        self._sim.crash(name)
        return "ok"

    def cmd_restart(self, name: str, join: str = "") -> str:
        self._sim.restart(name, [join] if join else None)
        return "ok"

    def cmd_leave(self, name: str) -> str:
        self._sim.leave(name)
        return "ok"

    def cmd_stall(self, name: str, duration: str) -> str:
        self._sim.stall(name, parse_duration(duration))
        return "ok"

    def cmd_slow(self, name: str, delay: str = "200ms..600ms", **kw: str) -> str:
        lo, hi = (parse_duration(d) for d in delay.split(".."))
        sim = self._sim
        sim.slow(name, sim.now + parse_duration(kw["for"]), (lo, hi))
        return "ok"

    def cmd_partition(self, *groups: str) -> str:
        self._sim.network.partition([g.split(",") for g in groups])
        return "ok"

    def cmd_heal(self) -> str:
        self._sim.network.heal()
        return "ok"

    def cmd_loss(self, percent: str, a: str | None = None, b: str | None = None) -> str:
        self._sim.network.set_loss(parse_percent(percent), a, b)
        return "ok"

    # ------------------------------------------------------------------ time

    def _observers(self, member: str) -> int:
        return sum(1 for n in self._sim.running() if n.name != member)

    def _advance(
        self, seconds: float, stop: Callable[[], bool] | None, quiet: bool = False
    ) -> tuple[bool, list[str]]:
        sim = self._sim
        self._news = _News(sim.now)
        try:
            # Conditions are checked every 10 ms of virtual time: cheap and exact enough.
            end = sim.now + seconds
            held = False
            while sim.now < end:
                sim.run_until(min(end, sim.now + 0.01))
                if stop is not None and stop():
                    held = True
                    break
            return held, self._news.render(self._observers, quiet)
        finally:
            self._news = None

    def cmd_run(self, duration: str, *flags: str) -> str:
        _, lines = self._advance(parse_duration(duration), None, "quiet" in flags)
        return "\n".join(lines) if lines else "(no news)"

    def cmd_expect(self, what: str, *args: str, **kw: str) -> str:
        sim = self._sim
        start = sim.now
        quiet = "quiet" in args
        args = tuple(a for a in args if a != "quiet")
        if what == "no-false-dead":
            before = self._false_dead
            self._excused = set(kw.get("except", "").split(",")) - {""}
            try:
                _, lines = self._advance(parse_duration(kw["for"]), None, quiet)
            finally:
                self._excused = set()
            if self._false_dead != before:
                raise ScenarioFailure(
                    f"{self._false_dead - before} live members declared dead:\n" + "\n".join(lines)
                )
            return "\n".join([*lines, "ok: no live member declared dead"])
        if what == "all-see":
            name, state = args[0], MemberState[args[1].upper()]
            by = set(kw["by"].split(",")) if "by" in kw else None

            def cond() -> bool:
                return all(
                    sim.view(n.name, name) is state
                    for n in sim.running()
                    if n.name != name and (by is None or n.name in by)
                )

        elif what == "converged":
            cond = self._converged
        else:
            raise ValueError(f"unknown expectation {what!r}")
        held, lines = self._advance(parse_duration(kw["within"]), cond, quiet)
        if not held:
            raise ScenarioFailure(f"{what} {' '.join(args)} did not hold:\n" + "\n".join(lines))
        return "\n".join([*lines, f"ok after {sim.now - start:.3f}s"])

    def _converged(self) -> bool:
        sim = self._sim
        running = sim.running()
        names = {n.name for n in running}
        for node in running:
            for record in node.core.members():
                alive = record.state is MemberState.ALIVE
                if alive != (record.name in names):
                    return False
            if node.core.live_count() != len(names):
                return False
        return True

    # ------------------------------------------------------------------ views

    def cmd_members(self, name: str) -> str:
        core = self._sim.nodes[name].core
        return "\n".join(f"{m.name} {m.state.label} inc={m.incarnation}" for m in core.members())

    def cmd_stats(self) -> str:
        total: dict[str, int] = {}
        for node in self._sim.nodes.values():
            for key, value in node.core.stats.as_dict().items():
                total[key] = total.get(key, 0) + value
        keys = ("probes", "probe_failures", "suspicions", "refutations", "dead_declared")
        shown = " ".join(f"{k}={total[k]}" for k in keys)
        return f"{shown} false_dead={self._false_dead}"
