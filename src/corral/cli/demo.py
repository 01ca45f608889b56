"""``corral demo``: the example control plane in a network-namespace lab, and a failover tour.

What it does, in order (root only: it builds network namespaces):
1. validates the spec and prints its summary;
2. brings up ``corral lab`` for it (a namespace per controller on a bridge, the embedded etcd,
   an agent per node; the ``galera:`` and ``rabbitmq:`` resources run the real MariaDB
   Galera and RabbitMQ when installed (``--servers``), services that do not exist here run as
   small HTTP stand-ins; the lab's notes say which) in ``--dir`` (default
   ``/run/corral-lab/<cluster>``), replacing a lab a previous demo left;
3. waits until every VIP is held (said as soon as it is: the front door does not wait for the
   databases), then until every instance is healthy and promoted where it should be (Galera
   and RabbitMQ formed), and shows ``corral status``;
4. with the real servers, declares a quorum queue on the node it will power off and publishes
   confirmed messages, and starts a write load on the database through that node's VIP
   (:mod:`corral.cli.demo_state`); starts a client in the client namespace (a GET to every VIP
   every 10 ms, 100 ms timeout), powers off the node that holds the first VIP (its link goes
   down and every process of it is killed, as in a power cut), and prints what corral did and
   when: each VIP and active-passive service that moved, the measured client downtime per
   VIP, the writes acknowledged, how long writes failed and how many acknowledged writes were
   lost (read back), the confirmed messages the queue kept (drained from a survivor), and the
   events (the fence among them);
5. powers the node on again, waits until it is back (VIPs fail back home, its database and
   broker rejoin), shows status, and leaves the cluster running with the commands to look at
   it and to stop it (``corral demo-down``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from corral.cli.demo_state import StateTour
from corral.cli.lab import servers_option
from corral.cli.render import print_summary
from corral.spec import Spec, SpecError, load_spec, load_spec_text

if TYPE_CHECKING:
    from corral.lab.lab import Lab

LAB_ROOT = Path("/run/corral-lab")
PY = sys.executable


def _lab_dir(spec: Spec, option: Path | None) -> Path:
    return option if option is not None else LAB_ROOT / spec.cluster


class Tour:
    """The running lab, seen from the client namespace."""

    def __init__(self, lab: Any, spec: Spec) -> None:
        from corral.lab import netns

        self.lab, self.spec, self.netns = lab, spec, netns
        self.lab_spec = load_spec_text(lab.spec_file.read_text())  # what the agents run
        self.vips = [
            str(a.ip)
            for res in spec.resources.values()
            if res.vip_set is not None
            for a in res.vip_set.addresses
        ] + [str(res.vip.address.ip) for res in spec.resources.values() if res.vip is not None]
        # a client of the first balanced service, on every VIP (HAProxy listens on each)
        port = next((r.balance.port for r in spec.resources.values() if r.balance), 80)
        self.urls = {vip: f"http://{vip}:{port}/" for vip in self.vips}

    def corral(self, *args: str) -> str:
        argv = [PY, "-m", "corral.cli.main", *args, "--spec", str(self.lab.spec_file)]
        done = subprocess.run(
            self.lab.exec_argv("client", argv),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.corral("status", "--json")))
        except ValueError:
            return {}

    def holders(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {v: set() for v in self.vips}
        for name, n in self.lab.state()["nodes"].items():
            if not n["powered"]:
                continue
            for cidr in self.netns.addresses(n["ns"], n["ifname"]):
                ip = cidr.split("/")[0]
                if ip in out:
                    out[ip].add(name)
        return out

    def exclusive_places(self) -> dict[str, list[str]]:
        """Where each active-passive service runs now (from the store)."""
        view = self.status()
        out = {}
        for name, res in self.spec.resources.items():
            if res.mode == "active-passive" and res.kind in ("process", "systemd", "ocf"):
                info = view.get("resources", {}).get(name, {})
                out[name] = sorted(
                    i.get("node", "") for i in info.get("running", []) if isinstance(i, dict)
                )
        return out

    def settled(self) -> bool:
        """Every VIP on exactly one node, every node online, every resource running healthy
        exactly where it is assigned (promoted where it should be: Galera and RabbitMQ
        formed), and every backend in rotation on every load balancer."""
        if any(len(h) != 1 for h in self.holders().values()):
            return False
        view = self.status()
        if not view or any(s != "online" for s in view.get("nodes", {}).values()):
            return False
        for name, info in view.get("resources", {}).items():
            running = info.get("running", [])
            if any(i.get("health") != "healthy" for i in running):
                return False
            if sorted(i.get("node") for i in running) != sorted(info.get("assigned", [])):
                return False
            res = self.lab_spec.resources.get(name)  # stand-ins are not promotable
            promoted = sum(1 for i in running if i.get("role") == "promoted")
            if (
                res is not None
                and res.mode == "promotable"
                and promoted < min(res.promoted or 0, len(running))
            ):
                return False  # a database or a broker still forming
        # every load balancer sends each backend somewhere (galera: to its one writer)
        for servers in view.get("backends", {}).values():
            lbs = {lb for states in servers.values() for lb in states}
            if any(all(s[lb] != "ready" for s in servers.values() if lb in s) for lb in lbs):
                return False
        return True

    def wait_vips(self, timeout: float) -> float:
        """Seconds until every VIP is on exactly one node; ClickException after ``timeout``."""
        start = time.monotonic()
        while any(len(h) != 1 for h in self.holders().values()):
            if time.monotonic() - start > timeout:
                raise click.ClickException(f"the VIPs were not all held within {timeout:g}s")
            time.sleep(0.1)
        return time.monotonic() - start

    def wait(self, what: str, timeout: float = 90.0) -> float:
        start = time.monotonic()
        while not self.settled():
            if time.monotonic() - start > timeout:
                raise click.ClickException(
                    f"the lab did not settle ({what}) within {timeout:g}s:\n"
                    + self.corral("events", "-n", "30")
                )
            time.sleep(0.3)
        return time.monotonic() - start


def _start_client(tour: Tour, out: Path, duration: float) -> subprocess.Popen[bytes]:
    ready = out.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    argv = [PY, "-m", "corral.lab.client", "--interval", "0.01", "--timeout", "0.1"]
    argv += ["--duration", f"{duration:g}", "--out", str(out), "--ready", str(ready)]
    argv += list(tour.urls.values())
    proc = subprocess.Popen(tour.lab.exec_argv("client", argv))
    deadline = time.monotonic() + 20
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise click.ClickException("the demo client did not start")
        time.sleep(0.02)
    return proc


def _watch(tour: Tour, console: Console, victim: str, fault: float, vips: set[str]) -> None:
    """Print each of ``vips`` (the victim's) as it appears on another node, until all moved
    or 6 s passed."""
    pending = set(vips)
    while pending and time.monotonic() - fault < 6.0:
        for vip, nodes in tour.holders().items():
            if vip in pending and nodes and victim not in nodes:
                took = time.monotonic() - fault
                console.print(f"  +{took:5.2f} s  VIP {vip} is up on {', '.join(nodes)}")
                pending.discard(vip)
        time.sleep(0.005)
    for vip in sorted(pending):
        console.print(f"  VIP {vip} did not move within 6 s")


def _account(console: Console, tour: Tour, fault_wall: float) -> None:
    """corral's events since the fault, with their time after it."""
    for line in tour.corral("events", "-n", "2000", "--json").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        after = float(event.get("time", 0)) - fault_wall
        if after < 0 or event.get("kind") in ("health", "waiting"):
            continue
        console.print(
            f"  +{after:5.2f} s  {event.get('node')} {event.get('kind')}: {event.get('reason')}",
            markup=False,
        )


def _downtime(console: Console, tour: Tour, out: Path, fault: float) -> None:
    from corral.lab.client import load, summarize

    records, _meta = load(out)
    for vip in tour.vips:
        got = summarize(records, fault, url=tour.urls[vip])
        if got["failed_after_fault"] == 0:
            console.print(f"  VIP {vip}: no failed request")
        elif got["all_ok_s"] is None:
            console.print(
                f"  VIP {vip}: not served again before the client stopped "
                f"({got['failed_after_fault']} requests failed)"
            )
        else:
            console.print(
                f"  VIP {vip}: served again {got['all_ok_s']:.2f} s after the power-off, "
                f"{got['failed_after_fault']} of {got['requests_after_fault']} requests "
                f"failed, longest gap {got['longest_gap_s']:.2f} s"
            )


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False), default="examples/openstack.yaml")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path))
@servers_option
def demo(spec_file: str, lab_dir: Path | None, servers: str) -> None:
    """Bring up SPEC_FILE in a network-namespace lab and tour a failover (root only)."""
    console = Console(highlight=False)
    spec = _demo_spec(spec_file)
    lab, where = _bring_up(spec, Path(spec_file), lab_dir, console, servers)
    tour = Tour(lab, spec)
    took = tour.wait_vips(timeout=90.0)  # the front door does not wait for the databases
    console.print(f"every VIP held after {took:.1f} s more")
    took = tour.wait("start", timeout=180.0)
    console.print(f"every VIP held and every instance healthy after {took:.1f} s more")
    console.rule("corral status")
    click.echo(tour.corral("status"))
    victim = next(iter(h for h in tour.holders().values() if h), {""}).pop()
    _failover(tour, lab, where, victim, console)
    console.rule(f"{victim} comes back")
    lab.power_on(victim)
    took = tour.wait("the node's return", timeout=150.0)
    console.print(f"{victim} rejoined and its VIP failed back home in {took:.1f} s")
    click.echo(tour.corral("status"))
    console.rule("the cluster keeps running")
    console.print(
        f"look at it:  corral lab status --dir {where}\n"
        f"             corral lab exec --dir {where} client -- corral status --spec "
        f"{lab.spec_file}\n"
        f"             corral lab exec --dir {where} client -- corral events --spec "
        f"{lab.spec_file}\n"
        f"break it:    corral lab fault --help\n"
        f"stop it:     make demo-down   (corral demo-down)"
    )


def _demo_spec(spec_file: str) -> Spec:
    try:
        spec = load_spec(spec_file)
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise SystemExit(1) from None
    if os.geteuid() != 0:
        raise click.ClickException(
            "the demo builds network namespaces, veth pairs and a bridge: run it as root "
            "(sudo make demo). Without root: corral simulate examples/openstack.yaml "
            "--state examples/openstack-state.yaml --fail-node ctl1"
        )
    return spec


def _bring_up(
    spec: Spec, spec_file: Path, lab_dir: Path | None, console: Console, servers: str = "auto"
) -> tuple[Lab, Path]:
    """The lab up for ``spec`` (a previous demo's lab taken down first), described."""
    from corral.lab.lab import Lab, LabError

    print_summary(spec, console)
    where = _lab_dir(spec, lab_dir)
    if (where / "lab.json").exists():
        console.print(f"a previous demo's lab is up in {where}: taking it down first")
        Lab(where).down(force=True)
    console.rule("the lab")
    began = time.monotonic()
    try:
        # fencing switches a lost node off and leaves it off (the spec's reboot would bring
        # it back at once): the tour powers it on itself, to show its return
        lab = Lab.up(spec_file, where, timeout=90.0, fence_action="off", tls=True, servers=servers)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    state = lab.state()
    console.print(f"lab up, every agent registered in {time.monotonic() - began:.1f} s")
    for note in state.get("notes", []):
        console.print(f"  note: {note}")
    for name, n in state["nodes"].items():
        console.print(f"  {name}: {n['address']} in namespace {n['ns']}")
    console.print(f"  client: {', '.join(state['client']['addresses'])} in {state['client']['ns']}")
    return lab, where


def _failover(tour: Tour, lab: Lab, where: Path, victim: str, console: Console) -> None:
    """Power ``victim`` off under a client's load; show what moved and what clients saw."""
    console.rule(f"failover: {victim} loses power")
    out = where / "demo-client.json"
    vips = {v for v, h in tour.holders().items() if victim in h}
    aps = {n for n, p in tour.exclusive_places().items() if victim in p}
    console.print(
        f"{victim} holds {', '.join(sorted(vips)) or 'no VIP'}"
        + (f" and runs {', '.join(sorted(aps))} (active-passive)" if aps else "")
        + f"; a client GETs {', '.join(tour.urls.values())} every 10 ms"
    )
    stateful = StateTour(lab, console)
    if stateful.active:
        stateful.before(victim, min(vips), tour.status())
    client = _start_client(tour, out, 12.0)  # a loaded machine may take 6 s and more
    time.sleep(1.5)
    fault, fault_wall = time.monotonic(), time.time()
    lab.power_off(victim)
    console.print(f"  +{0:5.2f} s  {victim} powered off (link down, every process killed)")
    _watch(tour, console, victim, fault, vips)
    client.wait(timeout=60)
    console.print("what a client of each VIP saw (a GET every 10 ms, 100 ms timeout):")
    _downtime(console, tour, out, fault)
    if stateful.active:
        survivor = next(n for n in lab.state()["nodes"] if n != victim)
        stateful.after(fault_wall, survivor, min(set(tour.vips) - vips or vips))
    console.print("what corral did, from its events (corral events):")
    _account(console, tour, fault_wall)


@click.command(name="demo-down")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--spec", "spec_file", type=click.Path(dir_okay=False), default="examples/openstack.yaml"
)
def demo_down(lab_dir: Path | None, spec_file: str) -> None:
    """Stop the demo's lab and remove everything it made (also after an interrupted demo)."""
    if os.geteuid() != 0:
        raise click.ClickException("the demo's lab is root's: run it as root (sudo make demo-down)")
    from corral.lab.lab import Lab

    if lab_dir is None:
        try:
            lab_dir = _lab_dir(load_spec(spec_file), None)
        except SpecError:
            lab_dir = LAB_ROOT / "cloud1"
    removed = [r for r in Lab(lab_dir).down(force=True) if "process(es) killed" in r]
    click.echo(f"demo: lab in {lab_dir} down ({len(removed)} namespace(s) removed)")
