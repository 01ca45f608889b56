#!/usr/bin/env python3
"""Idle agent CPU, broken down by switching parts off (and optionally profiled with py-spy).

Starts the loopback lab of ``bench/failover_loopback.py`` (three real agents over a real
3-member etcd, the default check timing: every 1 s), lets it settle, then measures each agent's
CPU (utime + stime from ``/proc``) over several windows and reports the median per agent.

``--patch NAME`` (repeatable) starts every agent through this script with a monkeypatch applied
first, so a part's cost is the difference to a plain run. The patches are experiments only
(they switch safety-relevant parts off); see :data:`PATCHES`. ``--profile FILE`` records the
first agent with ``py-spy record --format raw`` (collapsed stacks) during the measurement.

``--tls``: etcd requires client certificates, the agents issue theirs from a CA bundle
(the before/after figure of issue 15: run it with and without, in the same hour).

Usage: bench/agent_idle.py [--windows 5] [--seconds 10] [--patch NAME ...] [--profile FILE]
       bench/agent_idle.py --matrix          (one run per patch, then a table)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.store.tls import TlsFiles

BENCH = Path(__file__).resolve()
sys.path.insert(0, str(BENCH.parent))
from _cpu import cpu_seconds, rss_mb  # noqa: E402

DEFAULT_CHECKS = "interval: 1s, timeout: 500ms, rise: 2, fall: 2"
TLS = False  # --tls: the loopback lab's etcd requires client certificates


# --- patches (run inside the agent process) ------------------------------------------------------


def _patch_legacy_keepalive() -> None:
    """The store's keepalive over gRPC, one new LeaseKeepAlive stream per renewal, instead of
    the HTTP gateway (for an A/B on the same tree)."""
    from aetcd import rpc

    from corral.store import etcd
    from corral.store._etcd_wire import REQUIRE_LEADER
    from corral.store.errors import LeaseNotFound

    async def keepalive(self: Any, lease_id: int) -> int:
        async def attempt(client: Any, budget: float) -> Any:
            stream = client.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                timeout=budget,
                metadata=REQUIRE_LEADER,
            )
            async for reply in stream:
                return reply
            return None

        reply = await self._call("keepalive", attempt)
        if reply is None or reply.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        return int(reply.TTL)

    etcd.EtcdStore.keepalive = keepalive  # type: ignore[method-assign]


def _patch_loop_gossip() -> None:
    """The gossip member on the event loop instead of its pump thread (for an A/B)."""
    from corral.net import gossip

    udp = gossip.GossipNode.udp.__func__  # type: ignore[attr-defined]

    def on_loop(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return udp(cls, *args, **{**kwargs, "threaded": False})

    gossip.GossipNode.udp = classmethod(on_loop)  # type: ignore[method-assign,assignment]


def _patch_no_gossip() -> None:
    from corral.agent import node

    init = node.Agent.__init__

    def without(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["gossip"] = False
        init(self, *args, **kwargs)

    node.Agent.__init__ = without  # type: ignore[method-assign]


def _patch_no_checks() -> None:
    """Health checks answer ok without any I/O (the schedule and the trackers still run)."""
    from corral.core.health import CheckOutcome
    from corral.health import checks

    async def ok(check: Any, node: Any) -> CheckOutcome:
        return CheckOutcome("ok", "patched", 0.0)

    checks.run_check = ok


def _patch_no_poll() -> None:
    from corral.agent import node

    node.STATUS_POLL = 1e9


def _patch_no_round() -> None:
    """Rounds only when something changed (no once-a-second round)."""
    from corral.agent import node

    node.ROUND_EVERY = 1e9


def _patch_no_guard() -> None:
    from corral.agent import node

    node.Agent._update_guard = lambda self: None  # type: ignore[method-assign]


def _patch_lazy_guard() -> None:
    """guard.json rewritten only while it lists exclusive services (or the list changed): a
    guard with nothing listed never fences, so its deadline does not matter."""
    from corral.agent import node

    update = node.Agent._update_guard
    last: dict[int, bool] = {}

    def lazy(self: Any) -> None:
        listed = any(
            n in self.spec.resources and self.spec.resources[n].exclusive for n in self.services
        )
        if listed or last.get(id(self), True):
            update(self)
        last[id(self)] = listed

    node.Agent._update_guard = lazy  # type: ignore[method-assign]


def _patch_raw_http() -> None:
    """Plain-http checks over asyncio streams (one request, the status line and as much body
    as ``body`` needs) instead of httpx; https stays on httpx. Same results for the lab's
    checks; a sketch of the recommended health/checks.py change, not a full HTTP client."""
    import urllib.parse

    from corral.health import checks

    original = checks.Checker._http

    async def raw(self: Any, spec: Any, url: str, timeout: float) -> tuple[str, str]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or spec.body is not None:
            return await original(self, spec, url, timeout)
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        except OSError as exc:
            return "critical", f"{url}: {exc.strerror or exc}"
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            host = parts.netloc
            writer.write(f"{spec.method} {path} HTTP/1.1\r\nHost: {host}\r\n".encode())
            writer.write(b"Connection: close\r\n\r\n")
            line = await reader.readline()
            fields = line.split(None, 2)
            if len(fields) < 2 or not fields[1].isdigit():
                return "critical", f"{url}: not an HTTP answer"
            code = int(fields[1])
            got = f"HTTP {code} from {url}"
            if code not in spec.status:
                return "critical", f"{got} (expected {spec.status})"
            return "ok", got
        except OSError as exc:
            return "critical", f"{url}: {exc}"
        finally:
            writer.close()

    checks.Checker._http = raw  # type: ignore[assignment,method-assign]


def _probe_every(interval: float) -> None:
    """Gossip probes every ``interval`` instead of the profile's (as ``gossip.probe_interval``
    in the spec would: suspicion timeouts keep their length in seconds)."""
    from corral.core.membership import profile, with_probe_interval
    from corral.spec import model

    def effective_gossip(self: Any) -> Any:
        return with_probe_interval(profile(self.profile), interval)

    model.Spec.effective_gossip = property(effective_gossip)  # type: ignore[assignment]


def _patch_probe_100ms() -> None:
    _probe_every(0.1)


def _patch_probe_150ms() -> None:
    _probe_every(0.15)


def _patch_cached_timing() -> None:
    """``Spec.effective_timing`` computed once per spec instead of on every access (it builds
    a pydantic model; the agent reads it several times per keepalive interval)."""
    from corral.spec import model
    from corral.spec.profiles import resolve_timing as resolve

    cache: dict[int, Any] = {}

    def effective_timing(self: Any) -> Any:
        key = id(self)
        if key not in cache:
            cache[key] = resolve(self.profile, self.timing)
        return cache[key]

    model.Spec.effective_timing = property(effective_timing)  # type: ignore[method-assign,assignment]


def _patch_count_wakeups() -> None:
    """Count the event loop's wake-ups and what each one ran, written every 2 s to
    ``$CORRAL_BENCH_WAKEUPS/<pid>.json`` (``recent_per_s``: rates over the last ~10 s).
    Only selects that may sleep count. Also: store calls by caller, the gossip pump thread's
    callbacks with their CPU (``pump: ...``, ``pump_trace``: the last 300 with wall time), and
    the CPU of each gossip stage (``us in wire.open`` ...). Why wake-ups matter: on this VM the
    same code costs ~10x more CPU after 100 ms asleep than when run back to back (a seal+open
    of one ping: 15 us hot, 140 us after 10 ms idle, 210 us after 100 ms), so idle CPU is
    mostly the number of separate wake-ups times that cold start."""
    import gc
    import selectors
    import threading
    from asyncio import events

    out = Path(os.environ.get("CORRAL_BENCH_WAKEUPS", "/tmp")) / f"{os.getpid()}.json"
    counts: dict[str, int] = {}
    state = {"wakes": 0, "first": True, "t0": time.monotonic()}
    main_thread = threading.get_ident()
    select = selectors.EpollSelector.select

    def counted_select(self: Any, timeout: float | None = None) -> Any:
        ready = select(self, timeout)
        if threading.get_ident() == main_thread and timeout != 0:  # it slept: a real wake-up
            state["wakes"] += 1
            state["first"] = True
        return ready

    run = events.Handle._run

    def label(handle: Any) -> str:
        cb = handle._callback
        owner = getattr(cb, "__self__", None)
        if owner is not None and hasattr(owner, "get_coro"):
            coro = owner.get_coro()
            frame = getattr(coro, "cr_frame", None)
            return getattr(coro, "__qualname__", repr(coro)) + (
                f"@{frame.f_lineno}" if frame is not None else ""
            )
        return getattr(cb, "__qualname__", repr(cb))

    def counted_run(self: Any) -> None:
        if state["first"] and threading.get_ident() == main_thread:
            state["first"] = False
            key = label(self)
            counts[key] = counts.get(key, 0) + 1
        run(self)

    history: list[dict[str, Any]] = []

    def dump() -> None:
        while True:
            time.sleep(2.0)
            doc: dict[str, Any] = {
                "seconds": time.monotonic() - state["t0"],
                "wakes": state["wakes"],
            }
            doc["first_handle"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
            doc["gc"] = gc.get_stats()
            history.append(doc.copy())
            old = history[-6] if len(history) >= 6 else history[0]  # ~10 s ago
            span = doc["seconds"] - old["seconds"]
            if span > 0:
                doc["recent_per_s"] = {
                    "wakes": (doc["wakes"] - old["wakes"]) / span,
                    **{
                        k: (v - old["first_handle"].get(k, 0)) / span
                        for k, v in doc["first_handle"].items()
                        if v != old["first_handle"].get(k, 0)
                    },
                }
            doc["pump_trace"] = list(trace)
            out.write_text(json.dumps(doc, indent=1))

    from corral.store import etcd

    call = etcd.EtcdStore._call

    async def counted_call(self: Any, name: str, attempt: Any, **kw: Any) -> Any:
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None and "corral/store/" in frame.f_code.co_filename:
            frame = frame.f_back
        where = f"{frame.f_code.co_qualname}" if frame is not None else "?"
        key = f"store call: {name} from {where}"
        counts[key] = counts.get(key, 0) + 1
        return await call(self, name, attempt, **kw)

    from corral.net import pump

    guarded = pump.PacketPump._guarded
    pump_stats = {"calls": 0, "ns": 0}

    trace: list[tuple[float, str, int]] = []

    def timed(self: Any, fn: Any, *args: Any) -> None:
        t0 = time.thread_time_ns()
        at = time.time()
        guarded(self, fn, *args)
        spent = time.thread_time_ns() - t0
        pump_stats["ns"] += spent
        trace.append((at, getattr(fn, "__name__", "?"), spent // 1000))
        del trace[:-300]
        pump_stats["calls"] += 1
        counts["pump: callbacks"] = pump_stats["calls"]
        counts["pump: callback us"] = pump_stats["ns"] // 1000

    pump.PacketPump._guarded = timed  # type: ignore[method-assign]

    from corral.core.membership import core as mcore
    from corral.net import transport as ntransport
    from corral.net import wire as nwire

    def stage(owner: Any, attr: str, key: str) -> None:
        fn = getattr(owner, attr)

        def wrapped(*args: Any, **kw: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return fn(*args, **kw)
            finally:
                counts[f"us in {key}"] = (
                    counts.get(f"us in {key}", 0) + (time.thread_time_ns() - t0) // 1000
                )
                counts[f"calls of {key}"] = counts.get(f"calls of {key}", 0) + 1

        setattr(owner, attr, wrapped)

    stage(nwire.Wire, "open", "wire.open")
    stage(nwire.Wire, "seal", "wire.seal")
    stage(mcore.Membership, "handle", "core.handle")
    stage(mcore.Membership, "tick", "core.tick")
    stage(ntransport.UdpTransport, "send_packet", "send_packet")
    etcd.EtcdStore._call = counted_call  # type: ignore[method-assign,assignment]
    selectors.EpollSelector.select = counted_select  # type: ignore[method-assign]
    events.Handle._run = counted_run  # type: ignore[method-assign]
    threading.Thread(target=dump, daemon=True).start()


def _patch_no_api() -> None:
    """The agent without its HTTP API (issue 18's "API off")."""
    from corral.cli import cluster

    cluster._start_api = lambda *args: lambda: None


def _patch_uvicorn_tick() -> None:
    """The API server with uvicorn's own 0.1 s tick (what corral.api.server replaces)."""
    import uvicorn

    from corral.api import server

    async def ticking(self: Any) -> None:
        self.ready.set()
        await uvicorn.Server.main_loop(self)

    server._Server.main_loop = ticking  # type: ignore[method-assign]
    server._Server.request_stop = lambda self: setattr(self, "should_exit", True)  # type: ignore[method-assign]


def _patch_uvloop() -> None:
    """The agent on uvloop's event loop (libuv) instead of asyncio's selector loop (an
    experiment: ``pip install uvloop`` first; measured no gain here)."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("agent_idle: the uvloop patch needs `pip install uvloop` (not a dependency)")

    uvloop.install()


PATCHES = {
    "legacy-keepalive": _patch_legacy_keepalive,
    "loop-gossip": _patch_loop_gossip,
    "no-gossip": _patch_no_gossip,
    "no-checks": _patch_no_checks,
    "no-poll": _patch_no_poll,
    "no-round": _patch_no_round,
    "no-guard": _patch_no_guard,
    "cached-timing": _patch_cached_timing,
    "lazy-guard": _patch_lazy_guard,
    "raw-http": _patch_raw_http,
    "probe-100ms": _patch_probe_100ms,
    "probe-150ms": _patch_probe_150ms,
    "count-wakeups": _patch_count_wakeups,
    "uvloop": _patch_uvloop,
    "no-api": _patch_no_api,
    "uvicorn-tick": _patch_uvicorn_tick,
}


def agent_main(patches: list[str], argv: list[str]) -> None:
    """Apply ``patches``, then run ``corral agent`` with ``argv``."""
    for name in patches:
        if name == "quiet":
            argv = [a for a in argv if a != "-v"]
        elif name:
            PATCHES[name]()
    from corral.cli.main import main

    sys.argv = ["corral", *argv]
    main()


# --- the measurement ---------------------------------------------------------------------------


def start_spy(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``: collapsed stacks (``--format raw``) at 1 kHz, without pausing it."""
    spy = Path(sys.executable).with_name("py-spy")
    argv = [str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "1000"]
    argv += ["--nonblocking", "--format", "raw", "-o", out]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# (part, markers): a sample belongs to the first part with a marker somewhere in its stack
PARTS = [
    ("guard files (listing, deadline per renewal)", ("write_atomic", "_update_guard")),
    ("Spec.effective_timing", ("effective_timing",)),
    ("lease keepalive", ("keepalive", "_KeepAliveStream", "StreamStream", "_StreamRequestMixin")),
    ("gossip", ("net/gossip.py", "net/transport.py", "net/wire.py", "net/pump.py", "membership")),
    ("health checks (httpx)", ("health/checks.py", "httpx", "httpcore", "anyio", "instances.py")),
    ("driver status polls", ("_poll_drivers", "drivers/")),
    ("round (controller, assignments, publish)", ("_round", "controller.py", "scheduler")),
    ("main loop tick (self-fence check)", ("_main_loop", "_self_fence")),
    ("watch", ("_watch_loop", "watch")),
    ("store calls (unary gRPC completions)", ("grpc/aio", "store/etcd.py")),
    ("logging", ("logging/",)),
]


def summarize(raw: str) -> list[tuple[str, float]]:
    """Share of the busy samples of a py-spy raw profile per part of the agent. Samples of
    gRPC's poller thread (native code that py-spy cannot see idle) and of the event loop's
    ``select`` are left out: per-thread CPU shows that thread near 0."""
    counts: dict[str, int] = {}
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "select (selectors.py" in stack or "poll (corral/net/pump.py" in stack:
            continue  # asleep
        if stack.startswith("Thread._bootstrap") and "net/pump.py" not in stack:
            continue  # gRPC's threads (the gossip pump thread is corral's: kept)
        part = next((p for p, marks in PARTS if any(m in stack for m in marks)), "event loop")
        counts[part] = counts.get(part, 0) + int(n)
        total += int(n)
    return sorted(((p, c / max(total, 1)) for p, c in counts.items()), key=lambda x: -x[1])


async def measure(
    base: Path, patches: list[str], windows: int, seconds: float, profile: str | None
) -> dict[str, Any]:
    from corral.lab.loopback import Cluster

    class Patched(Cluster):
        """Agents started through this script (``--as-agent``) when patches are asked for."""

        def start_agent(self, node: str, *options: str) -> None:
            if not patches:
                super().start_agent(node, *options)
                return
            self.state_dir(node).mkdir(parents=True, exist_ok=True)
            argv = ["agent", "--spec", str(self.spec_file), "--node", node, "--etcd"]
            argv += [self.etcd_arg, "--state-dir", str(self.state_dir(node)), "-v", *options]
            with open(self.base / f"agent-{node}.log", "ab") as log:
                self.agents[node] = subprocess.Popen(
                    [sys.executable, str(BENCH), "--as-agent", ",".join(patches), "--", *argv],
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )

    c = Patched(base, DEFAULT_CHECKS, tls=TLS)
    await c.start()
    try:
        deadline = time.monotonic() + 60
        while not (len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not settle (logs in {base})")
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # registration, gossip join and the first rounds are over
        pids = {n: p.pid for n, p in c.agents.items()}
        guards = {n: int((c.state_dir(n) / "guard.pid").read_text()) for n in pids}
        spy = start_spy(pids["n1"], windows * seconds, profile) if profile else None
        samples: dict[str, list[float]] = {n: [] for n in pids}
        guard_before, g0 = {n: cpu_seconds(p) for n, p in guards.items()}, time.monotonic()
        for _ in range(windows):
            before = {n: cpu_seconds(p) for n, p in pids.items()}
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            dt = time.monotonic() - t0
            for n, p in pids.items():
                samples[n].append((cpu_seconds(p) - before[n]) / dt * 100)
        elapsed = time.monotonic() - g0
        guard_cpu = {
            n: (cpu_seconds(p) - guard_before[n]) / elapsed * 100 for n, p in guards.items()
        }
        if spy is not None:
            await asyncio.to_thread(spy.wait, 60)
        rss = {n: rss_mb(p) for n, p in pids.items()}
        controller = await _controller(c.etcd.endpoints, c.client_tls)
    finally:
        await c.stop()
    return {
        "patches": patches,
        "cpu_pct": {n: statistics.median(s) for n, s in samples.items()},
        "cpu_samples": samples,
        "rss_mb": rss,
        "guard_cpu_pct": guard_cpu,
        "controller": controller,
    }


async def _controller(endpoints: list[str], tls: TlsFiles | None) -> str:
    from corral.store import EtcdStore, Keys

    store = EtcdStore(endpoints, tls=tls)
    try:
        kv = await store.get(Keys("agenttest").controller)
        return kv.value.decode(errors="replace")[:40] if kv else "?"
    finally:
        await store.close()


def run(patches: list[str], windows: int, seconds: float, profile: str | None) -> dict[str, Any]:
    """One measurement on a fresh lab; a lab that does not settle (a busy machine) is retried
    once on another fresh one."""
    for attempt in (1, 2):
        with tempfile.TemporaryDirectory(prefix="corral-bench-idle-") as tmp:
            try:
                return asyncio.run(measure(Path(tmp), patches, windows, seconds, profile))
            except TimeoutError as exc:
                if attempt == 2:
                    raise
                print(f"  ({exc}; once more)", flush=True)
    raise AssertionError("unreachable")


def main() -> None:
    if "--as-agent" in sys.argv:
        i = sys.argv.index("--as-agent")
        agent_main(sys.argv[i + 1].split(","), sys.argv[i + 3 :])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--patch", action="append", default=[], choices=[*PATCHES, "quiet"])
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--matrix", action="store_true", help="one run per patch")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="P1,P2",
        help="a comma-separated patch set ('plain': none); repeatable, compared side by side",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per config, interleaved")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--tls", action="store_true", help="etcd over TLS with client certificates (issue 15)"
    )
    args = parser.parse_args()
    global TLS
    TLS = args.tls
    configs = [args.patch]
    if args.config:
        configs = [[p for p in c.split(",") if p and p != "plain"] for c in args.config]
    if args.matrix:
        configs = [[], *([p] for p in [*PATCHES, "quiet"])]
    for patches in configs:
        unknown = set(patches) - {*PATCHES, "quiet"}
        if unknown:
            parser.error(f"unknown patch(es): {', '.join(sorted(unknown))}")
    results = []
    per_config: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for patches in configs:
            profile = args.profile if len(configs) == 1 and args.repeat == 1 else None
            r = run(patches, args.windows, args.seconds, profile)
            results.append(r)
            cpu = r["cpu_pct"]
            label = ("tls " if TLS else "") + ("+".join(patches) or "plain")
            per_config.setdefault(label, []).append(statistics.median(cpu.values()))
            print(
                f"{label:18s} "
                + "  ".join(f"{n} {v:5.2f}%" for n, v in cpu.items())
                + f"  median {statistics.median(cpu.values()):5.2f}%"
                + f"  rss {max(r['rss_mb'].values()):.0f} MB"
                + f"  guard {statistics.median(r['guard_cpu_pct'].values()):4.2f}%"
                + f"  controller {r['controller']}",
                flush=True,
            )
    if args.repeat > 1:
        print("median over runs of the median agent:")
        for label, values in per_config.items():
            spread = f"{min(values):.2f}-{max(values):.2f}"
            print(f"  {statistics.median(values):5.2f} %  ({spread})  {label}")
    if args.profile and len(configs) == 1 and args.repeat == 1:
        n1 = results[0]["cpu_pct"]["n1"]
        print(f"py-spy profile of n1 ({n1:.2f} % of a core), busy samples by part:")
        for part, share in summarize(args.profile):
            print(f"  {share * 100:5.1f} %  ~{share * n1:4.2f} % CPU  {part}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
