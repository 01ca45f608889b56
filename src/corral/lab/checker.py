"""The independent checker of a chaos run: it watches the lab, never asks corral.

What it looks at (see :mod:`corral.lab.observe` for how):

- every ``interval`` (10 ms): the addresses of every node namespace (netlink), and the process
  each exclusive resource's pid file names on each node;
- every ``slow`` (0.5 s): every process of every node namespace (``/proc``): agents (two on one
  node is a violation; an agent that dies while ``lab.json`` still names it, unless the
  harness announced it, is a violation) and exclusive stand-ins found by their argv (a copy
  whose pid file is not written yet still counts); ``lab.json`` (which node is frozen);
- every second: new lines of every ``agent.log`` (a ``Traceback`` is a violation, kept with the
  lines around it) and the ``admin/`` records through etcd's JSON gateway (a record the
  harness saw after its last operator command that is gone or different is a violation);
- continuously, from the client namespace: who answers ARP for each VIP (``arpwatch``; two
  MACs in one sample is a violation).

Holders: a SIGSTOPped process still holds (it keeps its sockets and files, a SIGCONT makes it
serve again); a zombie does not. A VIP is held by every namespace that has the address.

Violations are intervals (``start``/``end`` on CLOCK_MONOTONIC) or events (``end == start``),
each with a detail. One that starts while a node involved is frozen and the cluster has no
fencing is put in category ``frozen-unfenced``: a paused machine keeps its addresses and
processes and nothing but a fence can take them away, so the lease path alone cannot prevent
it (reported apart, not counted as a corral bug).

The pure part is :class:`Tracker`; :class:`Checker` runs the threads around it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.lab import gateway, procs
from corral.lab.observe import AddrSocket, LogTail, pidfile_holder

Clock = Callable[[], float]
THAW_GRACE = 1.0  # seconds after a thaw during which a double holder is still the freeze's


@dataclass(frozen=True)
class NodeView:
    name: str
    ns: str
    state_dir: Path


@dataclass(frozen=True)
class Topology:
    """What the checker watches; ``client_ns`` None: no ARP watch and no store reads."""

    cluster: str
    nodes: tuple[NodeView, ...]
    vips: tuple[str, ...]
    exclusive: tuple[str, ...]
    client_ns: str | None = None
    client_if: str | None = None
    endpoints: tuple[str, ...] = ()
    tls: tuple[str, ...] = ()  # (ca, cert, key) of the lab's admin when the store runs TLS
    lab_state: Path | None = None
    fencing: bool = True
    mode_dir: Path | None = None  # stand-ins' argv names ``<mode_dir>/<res>@<node>.mode``

    @classmethod
    def from_lab(cls, lab: Any) -> Topology:
        """The topology of a running :class:`~corral.lab.lab.Lab`."""
        from corral.lab.modes import mode_dir
        from corral.spec import load_spec_text

        spec = load_spec_text(lab.spec_file.read_text())
        state = lab.state()
        vips: list[str] = []
        exclusive = []
        for name, res in spec.resources.items():
            if res.vip is not None:
                vips.append(str(res.vip.address.ip))
            elif res.vip_set is not None:
                vips += [str(a.ip) for a in res.vip_set.addresses]
            elif res.mode == "active-passive":
                exclusive.append(name)
        nodes = tuple(
            NodeView(n, rec["ns"], Path(rec["state_dir"])) for n, rec in state["nodes"].items()
        )
        return cls(
            cluster=spec.cluster,
            nodes=nodes,
            vips=tuple(vips),
            exclusive=tuple(exclusive),
            client_ns=state["client"]["ns"],
            client_if=state["client"]["ifname"],
            endpoints=tuple(lab.store_endpoints()),
            tls=tuple(state.get("tls", ())),
            lab_state=lab.state_path,
            fencing=bool(spec.fencing),
            mode_dir=mode_dir(lab.dir),
        )


@dataclass
class Violation:
    kind: str
    subject: str
    start: float
    end: float | None = None
    detail: str = ""
    category: str = "violation"
    context: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def as_dict(self, t0: float = 0.0) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "at": round(self.start - t0, 3),
            "duration": None if self.end is None else round(self.end - self.start, 3),
            "detail": self.detail,
            "category": self.category,
            "context": self.context,
        }


class Tracker:
    """Pure: turns per-sample judgements into violation intervals and events."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], Violation] = {}
        self.done: list[Violation] = []

    def update(
        self, now: float, kind: str, subject: str, bad: bool, detail: str = "", category: str = ""
    ) -> None:
        """``bad`` opens an interval for (kind, subject) unless one is open (its detail grows
        with new holders); not ``bad`` closes it at ``now``."""
        key = (kind, subject)
        current = self.open.get(key)
        if bad and current is None:
            self.open[key] = Violation(kind, subject, now, detail=detail)
            if category:
                self.open[key].category = category
        elif bad and current is not None and detail and detail not in current.detail:
            current.detail += f"; {detail}"
        elif not bad and current is not None:
            current.end = now
            self.done.append(self.open.pop(key))

    def event(self, now: float, kind: str, subject: str, detail: str, **kw: Any) -> Violation:
        v = Violation(kind, subject, now, now, detail, **kw)
        self.done.append(v)
        return v

    def close_all(self, now: float) -> None:
        for key in list(self.open):
            self.update(now, *key, bad=False)

    def violations(self) -> list[Violation]:
        return sorted([*self.done, *self.open.values()], key=lambda v: v.start)


def holders_detail(holders: dict[str, str]) -> str:
    return ", ".join(f"{n}: {what}" for n, what in sorted(holders.items()))


class Checker:
    """Watches a lab in threads from :meth:`start` to :meth:`stop` (see the module docstring).
    The harness tells it what it does on purpose: :meth:`expect_agent_death` before killing an
    agent, :meth:`operator` around an operator command (admin records may change inside)."""

    def __init__(
        self,
        topo: Topology,
        *,
        interval: float = 0.01,
        slow: float = 0.5,
        clock: Clock = time.monotonic,
        python: str = sys.executable,
    ) -> None:
        self.topo, self.interval, self.slow, self.clock = topo, interval, slow, clock
        self.python = python
        self.tracker = Tracker()
        self.lock = threading.Lock()  # guards tracker and the views below
        self.vip_holders: dict[str, set[str]] = {v: set() for v in topo.vips}
        self.exclusive_holders: dict[str, set[str]] = {r: set() for r in topo.exclusive}
        self.frozen: dict[str, float | None] = {}  # node -> thaw time (None: still frozen)
        self.samples = 0
        self.max_gap = 0.0
        self.tracebacks: dict[str, int] = {n.name: 0 for n in topo.nodes}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._expected_deaths: set[int] = set()
        self._agents_seen: dict[str, int] = {}
        self._admin_expected: dict[str, Any] | None = None
        self._admin_busy = 0
        self._arp: subprocess.Popen[bytes] | None = None
        self._inodes = {n.name: procs.netns_inode(n.ns) for n in topo.nodes}
        self._socks = {n.name: AddrSocket(n.ns) for n in topo.nodes}
        self._logs = {n.name: LogTail(n.state_dir / "agent.log") for n in topo.nodes}
        for tail in self._logs.values():  # what happened before the run is not the run's
            tail.read()

    # --- control -----------------------------------------------------------------------------

    def start(self) -> None:
        loops = [("fast", self._fast_loop), ("slow", self._slow_loop), ("admin", self._admin_loop)]
        if self.topo.client_ns and self.topo.client_if and self.topo.vips:
            loops.append(("arp", self._arp_loop))
        for name, target in loops:
            t = threading.Thread(target=self._guarded(target), name=f"checker-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> list[Violation]:
        """Stop watching; return every violation (open ones closed now)."""
        self._stop.set()
        if self._arp is not None and self._arp.poll() is None:
            self._arp.kill()
        for t in self._threads:
            t.join(timeout=5)
        for sock in self._socks.values():
            sock.close()
        with self.lock:
            self._read_logs(self.clock())
            self.tracker.close_all(self.clock())
            return self.tracker.violations()

    def _guarded(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception as exc:  # a checker that dies silently would report nothing
                with self.lock:
                    self.tracker.event(self.clock(), "checker-error", loop.__name__, repr(exc))

        return run

    def expect_agent_death(self, pid: int) -> None:
        with self.lock:
            self._expected_deaths.add(pid)

    @contextlib.contextmanager
    def operator(self) -> Iterator[None]:
        """Around an operator command: the admin records may change meanwhile; afterwards
        they are read again and become what must be kept."""
        with self.lock:
            self._admin_busy += 1
        try:
            yield
        finally:
            found = self._read_admin()
            with self.lock:
                self._admin_busy -= 1
                if found is not None:
                    self._admin_expected = found

    def snapshot(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """(VIP holders, exclusive holders) of the last sample."""
        with self.lock:
            return (
                {k: set(v) for k, v in self.vip_holders.items()},
                {k: set(v) for k, v in self.exclusive_holders.items()},
            )

    # --- fast: VIPs and pid files --------------------------------------------------------------

    def _fast_loop(self) -> None:
        last = self.clock()
        while not self._stop.wait(self.interval):
            now = self.clock()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            self._fast(now)

    def _fast(self, now: float) -> None:
        vips: dict[str, dict[str, str]] = {v: {} for v in self.topo.vips}
        excl: dict[str, dict[str, str]] = {r: {} for r in self.topo.exclusive}
        for node in self.topo.nodes:
            try:
                addrs = self._socks[node.name].addresses()
            except OSError:
                addrs = set()
            for vip in self.topo.vips:
                if vip in addrs:
                    vips[vip][node.name] = "address"
            for res in self.topo.exclusive:
                proc = pidfile_holder(node.state_dir, res, self._inodes[node.name])
                if proc is not None:
                    excl[res][node.name] = f"pid {proc.pid} {proc.state}"
        with self.lock:
            self.samples += 1
            for vip, held in vips.items():
                self.vip_holders[vip] = set(held)
                self._judge(now, "vip-two-holders", vip, held)
            for res, held in excl.items():
                self.exclusive_holders[res] = set(held)
                self._judge(now, "exclusive-two-holders", res, held)

    def _judge(self, now: float, kind: str, subject: str, held: dict[str, str]) -> None:
        bad = len(held) > 1
        category = ""
        if bad and not self.topo.fencing:
            frozen = [n for n in held if self._frozen_at(n, now)]
            category = "frozen-unfenced" if frozen else ""
        self.tracker.update(now, kind, subject, bad, holders_detail(held) if bad else "", category)

    def _frozen_at(self, node: str, now: float) -> bool:
        if node not in self.frozen:
            return False
        thawed = self.frozen[node]
        return thawed is None or now - thawed < THAW_GRACE

    # --- slow: processes, lab.json, logs -------------------------------------------------------

    def _slow_loop(self) -> None:
        next_logs = 0.0
        while not self._stop.wait(self.slow):
            now = self.clock()
            self._slow(now)
            if now >= next_logs:
                with self.lock:
                    self._read_logs(now)
                next_logs = now + 1.0

    def _slow(self, now: float) -> None:
        inodes = {ino: name for name, ino in self._inodes.items() if ino is not None}
        found = procs.by_namespace(inodes)
        lab = self._lab_nodes()
        with self.lock:
            for name, rec in lab.items():
                if rec.get("frozen"):
                    self.frozen[name] = None
                elif name in self.frozen and self.frozen[name] is None:
                    self.frozen[name] = now
            for name, plist in found.items():
                self._check_agents(now, name, plist, lab.get(name, {}))
            self._check_marked(now, found)

    def _lab_nodes(self) -> dict[str, dict[str, Any]]:
        if self.topo.lab_state is None:
            return {}
        try:
            nodes: dict[str, dict[str, Any]] = json.loads(self.topo.lab_state.read_text())["nodes"]
            return nodes
        except (OSError, ValueError, KeyError):
            return {}

    def _check_agents(
        self, now: float, node: str, plist: list[procs.Proc], rec: dict[str, Any]
    ) -> None:
        agents = procs.agents(plist)
        detail = ", ".join(str(p.pid) for p in agents)
        self.tracker.update(now, "two-agents", node, len(agents) > 1, f"agents {detail}")
        recorded = rec.get("agent_pid")
        alive = {p.pid for p in agents}
        seen = self._agents_seen.get(node)
        if seen is not None and seen == recorded and seen not in alive:
            if seen not in self._expected_deaths:
                self.tracker.event(now, "agent-died", node, f"agent {seen} died unannounced")
            self._agents_seen.pop(node)
        if recorded in alive:
            self._agents_seen[node] = recorded

    def _check_marked(self, now: float, found: dict[str, list[procs.Proc]]) -> None:
        """Exclusive stand-ins found by argv (a copy whose pid file is not written yet, or
        is gone, still holds), joined with the pid-file holders of the last fast sample."""
        if self.topo.mode_dir is None:
            return
        for res in self.topo.exclusive:
            held = {n: "pid file" for n in self.exclusive_holders.get(res, set())}
            for node, plist in found.items():
                marker = f"{res}@{node}.mode"
                copies = [p for p in plist if any(a.endswith(marker) for a in p.argv)]
                if copies:
                    held[node] = f"pid {copies[0].pid} {copies[0].state} (argv)"
            self._judge(now, "exclusive-two-holders-argv", res, held)

    def _read_logs(self, now: float) -> None:
        for node, tail in self._logs.items():
            first = tail.lines_seen
            lines = tail.read()
            for i, line in enumerate(lines):
                if line.startswith("Traceback"):
                    self.tracebacks[node] += 1
                    context = lines[max(0, i - 5) : i + 25]
                    self.tracker.event(
                        now,
                        "traceback",
                        node,
                        f"{tail.path}:{first + i + 1}: {_last_error(lines[i:])}",
                        context=context,
                    )

    # --- admin records ---------------------------------------------------------------------

    def _read_admin(self) -> dict[str, Any] | None:
        topo = self.topo
        if not topo.client_ns or not topo.endpoints:
            return None
        prefix = f"/corral/{topo.cluster}/admin/".encode()
        return gateway.range_prefix(topo.client_ns, topo.endpoints, prefix, tls=topo.tls)

    def _admin_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self.lock:
                busy, expected = self._admin_busy, self._admin_expected
            if busy or expected is None:
                continue
            found = self._read_admin()
            with self.lock:
                if found is None or self._admin_busy or expected is not self._admin_expected:
                    continue  # no quorum (nothing to read), or an operator command meanwhile
                for name in sorted(set(expected) | set(found)):
                    want, got = expected.get(name), found.get(name)
                    detail = f"expected {json.dumps(want)}, store has {json.dumps(got)}"
                    self.tracker.update(self.clock(), "admin-lost", name, want != got, detail)

    # --- ARP, from the client namespace ------------------------------------------------------

    def _arp_loop(self) -> None:
        assert self.topo.client_ns and self.topo.client_if
        argv = ["ip", "netns", "exec", self.topo.client_ns, self.python, "-m"]
        argv += ["corral.lab.arpwatch", "--iface", self.topo.client_if, "--duration", "600"]
        while not self._stop.is_set():
            self._arp = subprocess.Popen([*argv, *self.topo.vips], stdout=subprocess.PIPE)
            assert self._arp.stdout is not None
            for raw in self._arp.stdout:
                if self._stop.is_set():
                    break
                with contextlib.suppress(ValueError):
                    sample = json.loads(raw)
                    macs = sample.get("macs", [])
                    with self.lock:
                        self._judge(
                            sample["t"],
                            "arp-two-answers",
                            sample["ip"],
                            {m: "answers" for m in macs} if len(macs) > 1 else {},
                        )
            self._arp.wait()


def _last_error(lines: list[str]) -> str:
    """The exception line that ends a traceback starting at ``lines[0]``."""
    for line in lines[1:]:
        if line and not line.startswith((" ", "Traceback")):
            return line.strip()[:200]
    return "(traceback)"
