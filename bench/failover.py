#!/usr/bin/env python3
"""Failover in the network-namespace lab: corral against keepalived + HAProxy, in one run.

Three nodes on a bridge, one VIP per node, HAProxy on every node in front of a stand-in API
service on every node, a client namespace. Targets, each on its own lab:

- ``corral``: ``corral lab`` with a vip-set, HAProxy and the API service under corral (lan
  profile, the lab fence device as the nodes' power switch);
- ``keepalived``: VRRPv2 with keepalived's default ``advert_int 1``, HAProxy with the stock
  checks of the OpenStack HA guide (``bench/_keepalived.py``);
- ``keepalived-tuned``: VRRPv3 with the lowest advert interval keepalived accepts.

Scenarios (each run starts from a settled lab: every VIP at home, every server up):

- ``power-off``: the node holding a VIP loses power (its link goes down, every process is
  killed). A client sends a GET to that VIP every 10 ms with a 100 ms timeout. Figures: first
  success after the outage began, when every request succeeds again, failed requests, and
  whether an ARP check from the client ever saw two answers for the VIP.
- ``link-cut``: the holder's switch port goes down (its processes keep running). The same
  client figures, plus how long the old holder kept the VIP configured and how long two nodes
  had it configured at once.
- ``partition``: the holder is cut off from the other nodes but not from the client (an
  nftables filter on the bridge): the case where a VIP can answer from two nodes. Figures: the
  client's, how long the old holder kept the VIP, and ARP samples that saw two answers.
- ``backend-crash``: about 200 requests/s spread over the VIPs; the API service on one node is
  killed -9. Failed requests.
- ``rolling-restart``: about 200 requests/s; every node's API service restarted in turn
  (corral: ``corral resource restart api --rolling``; keepalived: the operator's serial
  restart). Failed requests.

Prints a table (medians and maxima over runs) and writes ``--json FILE`` (stable names:
``<target>.<scenario>.<figure>``) and ``--png FILE`` (client success over time around a
power-off). ``--quick``: 3 runs, no tuned keepalived for the backend scenarios.
``--tls``: corral's embedded store over TLS with client certificates (the before/after figure
of issue 15; the keepalived baselines do not change).

Usage: bench/failover.py [--quick] [--runs N] [--targets corral,keepalived,...] [--json FILE]
       [--png FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from _keepalived import KeepalivedLab
from corral.lab import netns
from corral.lab.client import Record, load, summarize
from corral.lab.lab import Lab

PY = sys.executable
TLS = False  # --tls: corral's embedded store over TLS with client certificates (issue 15)
SPEC = """\
cluster: bench
profile: lan
store: embedded
nodes:
  n1: {address: 198.18.6.11, roles: [lb]}
  n2: {address: 198.18.6.12, roles: [lb]}
  n3: {address: 198.18.6.13, roles: [lb]}
fencing:
  power: {agent: fence_ipmilan, action: off}
defaults:
  health: {interval: 200ms, timeout: 300ms, rise: 2, fall: 2}
resources:
  vips:
    vip-set: [198.18.6.100/24, 198.18.6.101/24, 198.18.6.102/24]
    on: {role: lb}
    with: [haproxy]
  haproxy:
    haproxy: {stats_port: 8404}
    on: {role: lb}
    health: {http: "http://{node.address}:8404/health"}
  api:
    systemd: api.service
    health: {http: "http://{node.address}:8080/"}
    balance: {port: 80, backend_port: 8080, via: vips}
"""


class Target(Protocol):
    name: str

    @property
    def vips(self) -> list[str]: ...

    @property
    def client_ns(self) -> str: ...

    def url(self, vip: str) -> str: ...

    def home(self, vip: str) -> str: ...

    def holders(self, vip: str) -> set[str]: ...

    def wait_settled(self, timeout: float = 30.0) -> float: ...

    def power_off(self, node: str) -> object: ...

    def power_on(self, node: str) -> object: ...

    def cut_link(self, node: str) -> None: ...

    def heal_link(self, node: str) -> None: ...

    def kill_backend(self, node: str) -> object: ...

    def rolling_restart(self) -> object: ...

    def down(self) -> object: ...


class CorralTarget:
    """corral in its lab, with the same face as the keepalived baseline."""

    name = "corral"

    def __init__(self, work: Path, python: str = PY) -> None:
        """``python``: the interpreter the agents run with (another release's, for
        ``bench/upgrade.py``)."""
        spec = work / "spec.yaml"
        spec.write_text(SPEC)
        self.lab = Lab.up(spec, work / "lab", timeout=90.0, python=python, tls=TLS)
        self._vip_home = {f"198.18.6.{100 + i}": f"n{i + 1}" for i in range(3)}

    @property
    def vips(self) -> list[str]:
        return list(self._vip_home)

    @property
    def client_ns(self) -> str:
        return str(self.lab.state()["client"]["ns"])

    def url(self, vip: str) -> str:
        return f"http://{vip}/"

    def home(self, vip: str) -> str:
        return self._vip_home[vip]

    def holders(self, vip: str) -> set[str]:
        out = set()
        for name, n in self.lab.state()["nodes"].items():
            with contextlib.suppress(netns.NetnsError):
                if any(a.split("/")[0] == vip for a in netns.addresses(n["ns"], n["ifname"])):
                    out.add(name)
        return out

    def _get(self, vip: str) -> bool:
        argv = ["curl", "-s", "-f", "-m", "1", self.url(vip)]
        return bool(netns.run(netns.exec_argv(self.client_ns, argv), check=False).strip())

    def _all_ready(self) -> bool:
        view = self.lab.cluster_status(timeout=20.0)
        text = json.dumps(view)
        return '"unhealthy"' not in text and '"starting"' not in text and '"draining"' not in text

    def wait_settled(self, timeout: float = 30.0) -> float:
        start = time.monotonic()
        while True:
            held = all(self.holders(v) == {h} for v, h in self._vip_home.items())
            if held and all(self._get(v) for v in self.vips) and self._all_ready():
                time.sleep(1.0)  # every HAProxy applied the last states (watch + round)
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"corral lab not settled after {timeout:g}s\n{self.events()}"
                    + self.lab.log_tails()
                )
            time.sleep(0.2)

    def events(self, n: int = 40) -> str:
        argv = [PY, "-m", "corral.cli.main", "events", "--spec", str(self.lab.spec_file)]
        done = subprocess.run(
            self.lab.exec_argv("client", [*argv, "-n", str(n)]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout + done.stderr

    def power_off(self, node: str) -> object:
        return self.lab.power_off(node)

    def power_on(self, node: str) -> object:
        return self.lab.power_on(node)

    def cut_link(self, node: str) -> None:
        self.lab.cut_link(node)

    def heal_link(self, node: str) -> None:
        self.lab.heal_link(node)
        if not self.lab.node(node)["powered"]:  # the lab fence switched it off: power it on
            self.lab.power_on(node)

    def kill_backend(self, node: str) -> object:
        return self.lab.kill_service(node, "api")

    def rolling_restart(self) -> object:
        argv = [PY, "-m", "corral.cli.main", "resource", "restart", "api", "--rolling"]
        argv += ["--spec", str(self.lab.spec_file)]
        return subprocess.run(
            self.lab.exec_argv("client", argv), check=True, capture_output=True, timeout=90
        )

    def down(self) -> object:
        return self.lab.down(force=True)


class KeepalivedTarget:
    def __init__(self, work: Path, name: str, advert_int: float, vrrp_version: int) -> None:
        self.name = name
        self.lab = KeepalivedLab(work / "ka")
        self.lab.up(nodes=3, advert_int=advert_int, vrrp_version=vrrp_version)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.lab, attr)

    def rolling_restart(self) -> object:
        return self.lab.rolling_restart()

    def down(self) -> object:
        return self.lab.down()


# --- measuring --------------------------------------------------------------------------------


class Client:
    """The load generator in the client namespace, with an optional ARP watch beside it."""

    def __init__(
        self,
        t: Target,
        work: Path,
        urls: list[str],
        duration: float,
        args: list[str],
        arp: str = "",
    ) -> None:
        self.out = work / f"client-{time.monotonic_ns()}.json"
        ready = self.out.with_suffix(".ready")
        argv = [PY, "-m", "corral.lab.client", *args, "--duration", f"{duration:g}"]
        # the baseline's HAProxy balances by source address (the OpenStack HA guide's
        # `balance source`): one client address would pin every request to one backend
        for source in getattr(t, "client_sources", []) if not isinstance(t, CorralTarget) else []:
            argv += ["--source", source]
        argv += ["--out", str(self.out), "--ready", str(ready), *urls]
        self.proc = subprocess.Popen(netns.exec_argv(t.client_ns, argv))
        self.arp: subprocess.Popen[bytes] | None = None
        if arp:
            watch = [PY, "-m", "corral.lab.arpwatch", "--iface", _client_iface(t)]
            watch += ["--duration", f"{duration:g}", arp]
            self.arp = subprocess.Popen(netns.exec_argv(t.client_ns, watch), stdout=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not ready.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the client did not start")
            time.sleep(0.02)

    def finish(self) -> tuple[list[Record], int]:
        """The client's records, and how many ARP samples saw two answers for one VIP."""
        self.proc.wait(timeout=120)
        records, _meta = load(self.out)
        two = 0
        if self.arp is not None:
            out, _ = self.arp.communicate(timeout=120)
            for line in out.decode().splitlines():
                with contextlib.suppress(ValueError):
                    if len(json.loads(line).get("macs", [])) > 1:
                        two += 1
        return records, two


def _client_iface(t: Target) -> str:
    if isinstance(t, CorralTarget):
        return str(t.lab.state()["client"]["ifname"])
    from _keepalived import PREFIX

    return f"{PREFIX}nc"


def _poll_holders(t: Target, vip: str, old: str, until: float) -> dict[str, float | None]:
    """Sample who holds ``vip`` until ``until``: when the old holder dropped it, when another
    node had it, and how long both had it configured at once."""
    start = time.monotonic()
    dropped = taken = None
    both = 0.0
    last = start
    while time.monotonic() < until:
        held = t.holders(vip)
        now = time.monotonic()
        if old in held and len(held) > 1:
            both += now - last
        if dropped is None and old not in held:
            dropped = now - start
        if taken is None and held - {old}:
            taken = now - start
        last = now
        if dropped is not None and taken is not None:
            break
        time.sleep(0.005)
    return {"old_holder_kept_s": dropped, "new_holder_s": taken, "both_configured_s": both}


WINDOW = 22.0  # seconds of client after a power-off: long enough for HAProxy's own checks
# (inter 2s fall 5 and the retries) to give up on a dead backend in the baseline


def scenario_power_off(t: Target, work: Path) -> dict[str, Any]:
    vip = t.vips[1]
    victim = t.home(vip)
    c = Client(
        t, work, [t.url(vip)], 1.0 + WINDOW, ["--interval", "0.01", "--timeout", "0.1"], arp=vip
    )
    time.sleep(1.0)
    fault = time.monotonic()
    t.power_off(victim)
    records, two = c.finish()
    out = summarize(records, fault, url=t.url(vip))
    out["two_answers_seen"] = two
    out["series"] = [(r.sent - fault, r.ok) for r in records if r.url == t.url(vip)]
    t.power_on(victim)
    return out


def scenario_link_cut(t: Target, work: Path) -> dict[str, Any]:
    vip = t.vips[1]
    victim = t.home(vip)
    c = Client(t, work, [t.url(vip)], 7.0, ["--interval", "0.01", "--timeout", "0.1"], arp=vip)
    time.sleep(1.0)
    fault = time.monotonic()
    t.cut_link(victim)
    holders = _poll_holders(t, vip, victim, fault + 5.0)
    records, two = c.finish()
    out = summarize(records, fault, url=t.url(vip))
    out.update(holders)
    out["two_answers_seen"] = two
    t.heal_link(victim)
    return out


def _partition(t: Target, node: str, on: bool) -> None:
    """Cut ``node`` off from the other nodes only (the client still reaches it)."""
    if isinstance(t, CorralTarget):
        (t.lab.partition if on else t.lab.heal_partition)(node)
        return
    from _keepalived import SWITCH_NS

    assert isinstance(t, KeepalivedTarget)
    port = t.lab.node(node).switch_if
    if on:
        peers = [n.switch_if for n in t.lab.nodes if n.name != node]
        netns.partition_port(SWITCH_NS, port, peers)
    else:
        netns.heal_port(SWITCH_NS, port)


def scenario_partition(t: Target, work: Path) -> dict[str, Any]:
    """The holder loses its peers, not its clients: the split brain case."""
    vip = t.vips[1]
    victim = t.home(vip)
    c = Client(t, work, [t.url(vip)], 7.0, ["--interval", "0.01", "--timeout", "0.1"], arp=vip)
    time.sleep(1.0)
    fault = time.monotonic()
    _partition(t, victim, True)
    holders = _poll_holders(t, vip, victim, fault + 5.0)
    time.sleep(max(0.0, fault + 5.0 - time.monotonic()))
    two_at_end = int(len(t.holders(vip)) > 1)  # still a split brain 5 s after the fault?
    records, two = c.finish()
    _partition(t, victim, False)
    out = summarize(records, fault, url=t.url(vip))
    out.update(holders)
    out["two_answers_seen"] = two
    out["two_holders_after_5s"] = two_at_end
    if isinstance(t, CorralTarget):
        t.heal_link(victim)  # the lab fence powered it off: power it on
    return out


def _load(t: Target, work: Path, duration: float) -> Client:
    urls = [t.url(v) for v in t.vips]
    return Client(t, work, urls, duration, ["--rate", "200", "--cycle", "--timeout", "1.0"])


def scenario_backend_crash(t: Target, work: Path) -> dict[str, Any]:
    c = _load(t, work, 5.0)
    time.sleep(1.0)
    fault = time.monotonic()
    node = t.home(t.vips[1])
    t.kill_backend(node)
    records, _ = c.finish()
    if isinstance(t, KeepalivedTarget):
        t.lab.start_backend(node)  # what systemd's Restart= does for the baseline
    out = summarize(records, fault)
    return {"failed": out["failed"], "requests": out["requests"]}


def scenario_rolling_restart(t: Target, work: Path) -> dict[str, Any]:
    c = _load(t, work, 14.0)
    time.sleep(1.0)
    began = time.monotonic()
    t.rolling_restart()
    took = time.monotonic() - began
    records, _ = c.finish()
    out = summarize(records, began)
    return {"failed": out["failed"], "requests": out["requests"], "restart_s": took}


SCENARIOS: dict[str, Callable[[Target, Path], dict[str, Any]]] = {
    "power-off": scenario_power_off,
    "link-cut": scenario_link_cut,
    "partition": scenario_partition,
    "backend-crash": scenario_backend_crash,
    "rolling-restart": scenario_rolling_restart,
}
FIGURES = {
    "power-off": ["first_success_s", "all_ok_s", "failed", "two_answers_seen"],
    "link-cut": [
        "first_success_s",
        "all_ok_s",
        "failed",
        "old_holder_kept_s",
        "both_configured_s",
        "two_answers_seen",
    ],
    "partition": [
        "all_ok_s",
        "failed",
        "old_holder_kept_s",
        "two_answers_seen",
        "two_holders_after_5s",
    ],
    "backend-crash": ["failed", "requests"],
    "rolling-restart": ["failed", "requests", "restart_s"],
}


def make_target(name: str, work: Path) -> Target:
    if name == "corral":
        return CorralTarget(work)
    if name == "keepalived":
        return KeepalivedTarget(work, name, advert_int=1.0, vrrp_version=2)
    if name == "keepalived-tuned":
        return KeepalivedTarget(work, name, advert_int=0.01, vrrp_version=3)
    raise SystemExit(f"unknown target {name!r}")


def run_target(name: str, scenarios: list[str], runs: int, console: Console) -> dict[str, Any]:
    """Every scenario on a fresh lab of its own; a run that fails (or leaves a lab that does
    not settle) is reported, the lab rebuilt, and the next run goes on."""
    results: dict[str, Any] = {}
    for scen in scenarios:
        got: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="crlb-", dir="/tmp") as tmp:
            work = Path(tmp)
            t: Target | None = None
            try:
                for i in range(runs):
                    try:
                        if t is None:
                            t = make_target(name, work)
                            t.wait_settled(timeout=60.0)
                        fig = SCENARIOS[scen](t, work)
                        got.append(fig)
                        shown = {k: fig.get(k) for k in FIGURES[scen]}
                        console.print(f"  {name} {scen} run {i + 1}/{runs}: {shown}")
                        t.wait_settled(timeout=60.0)
                    except Exception as exc:  # one broken run must not cost the others
                        console.print(f"  {name} {scen} run {i + 1}/{runs} failed: {exc!r:.300}")
                        if t is not None:
                            with contextlib.suppress(Exception):
                                t.down()
                        t = None
            finally:
                if t is not None:
                    t.down()
        results[scen] = got
    return results


def median_max(values: list[Any]) -> tuple[float | None, float | None]:
    nums = [float(v) for v in values if isinstance(v, int | float)]
    if not nums:
        return None, None
    return statistics.median(nums), max(nums)


def report(all_results: dict[str, dict[str, Any]], console: Console) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    table = Table(title="failover in the namespace lab (median / max over runs)")
    table.add_column("scenario")
    table.add_column("figure")
    targets = list(all_results)
    for name in targets:
        table.add_column(name, justify="right")
    base = "keepalived" if "keepalived" in targets else None
    if base and "corral" in targets:
        table.add_column("keepalived / corral", justify="right")
    for scen, names in FIGURES.items():
        for fig in names:
            row = [scen, fig]
            medians: dict[str, float | None] = {}
            for name in targets:
                runs = all_results[name].get(scen)
                if not runs:
                    row.append("-")
                    continue
                med, top = median_max([r.get(fig) for r in runs])
                medians[name] = med
                figures[f"{name}.{scen}.{fig}.median"] = med
                figures[f"{name}.{scen}.{fig}.max"] = top
                row.append("-" if med is None else f"{med:.3g} / {top:.3g}")
            if base and "corral" in targets:
                a, b = medians.get(base), medians.get("corral")
                ratio = f"{a / b:.1f}x" if a and b else "-"
                if a is not None and b is not None and fig.endswith("_s"):
                    figures[f"ratio.{scen}.{fig}"] = a / b if b else None
                row.append(ratio if fig.endswith("_s") else "")
            table.add_row(*row)
    console.print(table)
    return figures


def plot(all_results: dict[str, dict[str, Any]], path: Path) -> None:
    """Share of successful requests per 100 ms around the first power-off of each target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in all_results if all_results[n].get("power-off")]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for name in names:
        bins: dict[int, list[bool]] = {}
        for sent, ok in all_results[name]["power-off"][0]["series"]:
            bins.setdefault(int((sent + 1.0) // 0.1), []).append(ok)
        xs = sorted(bins)
        ax.plot(
            [x * 0.1 - 1.0 for x in xs],
            [100 * sum(bins[x]) / len(bins[x]) for x in xs],
            label=name,
            lw=1.4,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_ylabel("requests ok (%)")
    ax.set_xlabel("seconds after the power-off of the VIP holder")
    ax.set_xlim(-1, WINDOW)
    ax.set_title("GET to the VIP every 10 ms, 100 ms timeout: share that succeeded, per 100 ms")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--tls", action="store_true", help="corral's store over TLS with client certificates"
    )
    parser.add_argument("--runs", type=int)
    parser.add_argument("--targets", default="corral,keepalived,keepalived-tuned")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path, default=Path("failover.png"))
    args = parser.parse_args()
    global TLS
    TLS = args.tls
    if os.geteuid() != 0:
        raise SystemExit("bench/failover.py builds network namespaces: run it as root")
    runs = args.runs or (3 if args.quick else 5)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)  # the table has a column per target
    scenarios = args.scenarios.split(",")
    all_results: dict[str, dict[str, Any]] = {}
    KeepalivedLab.down_stale()
    for name in args.targets.split(","):
        chosen = scenarios
        if args.quick and name == "keepalived-tuned":
            chosen = [s for s in scenarios if s in ("power-off", "link-cut", "partition")]
        console.print(f"[bold]{name}[/bold]: {', '.join(chosen)}, {runs} run(s) each")
        all_results[name] = run_target(name, chosen, runs, console)
    figures = report(all_results, console)
    if args.png:
        plot(all_results, args.png)
        console.print(f"plot: {args.png}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True))


def run_main(main: Callable[[], None]) -> None:
    """Run a lab bench's ``main``: SIGTERM and Ctrl-C end it through its cleanup, quietly."""
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        main()


if __name__ == "__main__":
    run_main(main)
