"""The baseline operators run today: keepalived (VRRP) moving VIPs + HAProxy with static backends.

The lab (namespace prefix ``ckb``; at most one such lab per machine):

- ``ckb-sw`` holds bridge ``ckbbr`` and the switch ends ``ckbs<i>``/``ckbsc`` of the veths, like
  corral's lab (``corral.lab.lab``), built with the same primitives (``corral.lab.netns``) and
  the same node sysctls (``ip_nonlocal_bind=1`` so every HAProxy binds every VIP, ARP only for
  own addresses, IPv6 off);
- ``ckb-n<i>``: node ``n<i>`` at ``198.18.8.1<i>/24`` on ``ckbn<i>``, running the stand-in app
  (``corral/lab/app.py`` on ``:8080``), HAProxy and keepalived, all started with
  ``ip netns exec`` and logging to ``<dir>/n<i>/*.log``;
- ``ckb-cl``: the client at ``198.18.8.250/24`` plus extra source addresses ``.240-.249``
  (HAProxy's ``balance source`` maps one client address to one backend; a load generator that
  spreads its requests over several source addresses looks like many clients).

VRRP, the usual active-active layout: one VRRP instance per VIP (``198.18.8.100+i``), each
node MASTER of one (priority 150) and BACKUP of the others (100 for the next node, 50 for the
one after), so each VIP has a home and a fixed order of heirs; preemption on (the default: a
home node that returns takes its VIP back). Multicast adverts (224.0.0.18) on the bridge work
between namespaces (the bridge has multicast snooping off), so no ``unicast_peer``. No
authentication (VRRPv3 has none) and no ``track_script`` (a ``killall -0 haproxy`` check sees
every namespace's HAProxy: pids are not namespaced here, so it would prove nothing).
VRRPv2 silently rounds a sub-second ``advert_int`` up to 1 s; VRRPv3 takes centiseconds,
``advert_int 0.01`` being the lowest keepalived 2.2.7 accepts.

HAProxy, the stock settings of the OpenStack HA guide's ``haproxy.cfg`` (openstack/ha-guide,
``doc/ha-guide/source/controller-ha-haproxy.rst``, the same file in openstack-manuals'
``controller-ha-haproxy.rst``): ``defaults`` with ``option redispatch``, ``retries 3``,
``timeout connect 10s``, ``timeout check 10s``, client/server ``1m``; per API service a
``listen`` in TCP mode with ``balance source``, ``option tcpka``, ``option httpchk``,
``option tcplog`` and ``server ... check inter 2000 rise 2 fall 5`` for every controller. Two
departures, both forced by the lab: ``option httpchk GET /`` (the guide's bare ``httpchk`` sends
``OPTIONS /``, which the stand-in app answers 501), and no ``chroot``/``user``/``daemon`` (HAProxy
runs in the foreground, ``-db``, as a child of the lab, with an admin stats socket).

Measured here (3 nodes, a request every 10 ms to each VIP from 11 source addresses, 100 ms
timeout, power-off of VIP 1's home; 3 runs, medians; figures of ``corral.lab.client.summarize``):
VRRPv2 ``advert_int 1``: first success 2.98 s (2.89-3.01), every request succeeds again after
18.1 s, 849 of 2,200 requests to VIP 1 failed; VRRPv3 ``advert_int 0.01``: first success 0.043 s
(0.042-0.095), all succeed after 18.2 s, 668 failed. The tail is HAProxy's: each HAProxy keeps
sending the clients that ``balance source`` maps to the dead backend there until five checks
failed (``inter 2000`` with a 2 s connect timeout per check), and the VIPs that did not move
lose as many requests (about 660 each). With one client address, ``balance source`` makes it
all or nothing: a client hashed to the dead node fails for 18 s whatever VRRP does.
``cut_link`` drops the node's carrier: its keepalived enters FAULT and releases its VIPs.

Faults mirror ``corral.lab.lab.Lab``: ``power_off``/``power_on``, ``cut_link``/``heal_link``,
``isolate`` (a partition without carrier loss), ``kill_backend``/``start_backend``,
``kill_keepalived``, ``malfunction`` and ``rolling_restart``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import corral.lab.app
from corral.lab import netns
from corral.lab.lab import node_sysctls

PREFIX = "ckb"
SWITCH_NS, BRIDGE, CLIENT_NS = f"{PREFIX}-sw", f"{PREFIX}br", f"{PREFIX}-cl"
SUBNET = "198.18.8"
PREFIXLEN = 24
APP_PORT, VIP_PORT = 8080, 80
CLIENT_ADDRESS = f"{SUBNET}.250"
CLIENT_SOURCES = [CLIENT_ADDRESS, *(f"{SUBNET}.{240 + i}" for i in range(10))]
BACKEND = "api_cluster"
APP = Path(corral.lab.app.__file__)
PRIORITIES = (150, 100, 50)  # home, next node, the one after


class BaselineError(RuntimeError):
    """The baseline lab could not do what was asked; the message says why (with log tails)."""


@dataclass(frozen=True)
class Node:
    name: str
    index: int  # 1-based

    @property
    def ns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def ifname(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def switch_if(self) -> str:
        return f"{PREFIX}s{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"


# --- configuration (pure) ------------------------------------------------------------------


def vip_of(index: int) -> str:
    """The VIP whose home is node ``index`` (1-based)."""
    return f"{SUBNET}.{99 + index}"


def advert_text(advert_int: float) -> str:
    """``advert_int`` as keepalived reads it: seconds, centiseconds at most (VRRPv3 takes
    0.01-40.95; VRRPv2 rounds anything below 1 s up to 1). ValueError below 0.01."""
    if advert_int < 0.01:
        raise ValueError(f"advert_int {advert_int}: keepalived's lowest is 0.01 (VRRPv3)")
    return f"{round(advert_int, 2):g}"


def keepalived_conf(node: Node, nodes: int, advert_int: float, vrrp_version: int) -> str:
    """The keepalived.conf of ``node``: one VRRP instance per VIP (see the module docstring)."""
    if vrrp_version not in (2, 3):
        raise ValueError(f"vrrp_version {vrrp_version}: 2 or 3")
    lines = [
        "global_defs {",
        f"  router_id {node.name}",
        f"  vrrp_version {vrrp_version}",
        "}",
    ]
    for home in range(1, nodes + 1):
        rank = (node.index - home) % nodes  # 0: home, 1: first heir, ...
        priority = PRIORITIES[rank] if rank < len(PRIORITIES) else max(1, 50 - rank)
        lines += [
            f"vrrp_instance VI_{home} {{",
            f"  state {'MASTER' if rank == 0 else 'BACKUP'}",
            f"  interface {node.ifname}",
            f"  virtual_router_id {50 + home}",
            f"  priority {priority}",
            f"  advert_int {advert_text(advert_int)}",
            "  virtual_ipaddress {",
            f"    {vip_of(home)}/{PREFIXLEN} dev {node.ifname}",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def haproxy_cfg(node: Node, nodes: int, run_dir: Path) -> str:
    """The haproxy.cfg of ``node``: the OpenStack HA guide's settings (module docstring)."""
    binds = [f"  bind {vip_of(i)}:{VIP_PORT}" for i in range(1, nodes + 1)]
    servers = [
        f"  server n{i} {Node(f'n{i}', i).address}:{APP_PORT} check inter 2000 rise 2 fall 5"
        for i in range(1, nodes + 1)
    ]
    return (
        "\n".join(
            [
                "global",
                "  maxconn 4000",
                f"  pidfile {run_dir}/haproxy.pid",
                f"  stats socket {run_dir}/haproxy.sock mode 600 level admin",
                "defaults",
                "  maxconn 4000",
                "  option redispatch",
                "  retries 3",
                "  timeout http-request 10s",
                "  timeout queue 1m",
                "  timeout connect 10s",
                "  timeout client 1m",
                "  timeout server 1m",
                "  timeout check 10s",
                f"listen {BACKEND}",
                *binds,
                "  balance source",
                "  option tcpka",
                "  option httpchk GET /",
                "  option tcplog",
                *servers,
            ]
        )
        + "\n"
    )


def parse_stat(csv_text: str) -> dict[str, str]:
    """``show stat`` CSV -> ``{server: status}`` for the backend's servers (UP, DOWN, MAINT,
    ``UP 1/2``, ``DOWN 1/5``, ...)."""
    text = csv_text.lstrip("# ")
    return {
        row["svname"]: row["status"]
        for row in csv.DictReader(io.StringIO(text))
        if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND")
    }


# --- the lab -------------------------------------------------------------------------------


class KeepalivedLab:
    """The baseline lab in ``work_dir`` (configs, pid files, logs; kept after ``down``).
    Creating the object does nothing; ``up`` builds, ``down`` removes (idempotent)."""

    def __init__(self, work_dir: Path = Path("/run/ckb-lab"), python: str = sys.executable):
        self.dir = work_dir.resolve()
        self.python = python
        self.nodes: list[Node] = []
        self.advert_int = 1.0
        self.vrrp_version = 2
        self._procs: dict[str, dict[str, subprocess.Popen[bytes]]] = {}

    # properties --------------------------------------------------------------------------

    @property
    def vips(self) -> list[str]:
        return [vip_of(n.index) for n in self.nodes]

    @property
    def client_ns(self) -> str:
        return CLIENT_NS

    @property
    def client_sources(self) -> list[str]:
        """The client namespace's addresses (``--source`` for the load generator)."""
        return list(CLIENT_SOURCES)

    def url(self, vip: str) -> str:
        return f"http://{vip}:{VIP_PORT}/"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise BaselineError(f"unknown node {name!r}; the lab has {[n.name for n in self.nodes]}")

    def home(self, vip: str) -> str:
        """The node that is MASTER of ``vip`` by configuration."""
        return next(n.name for n in self.nodes if vip_of(n.index) == vip)

    def node_dir(self, name: str) -> Path:
        return self.dir / name

    # up / down -----------------------------------------------------------------------------

    def up(
        self,
        nodes: int = 3,
        advert_int: float = 1.0,
        vrrp_version: int = 2,
        timeout: float = 20.0,
    ) -> float:
        """Build the lab, start every daemon and wait until each VIP is held by its home node
        alone and answers through HAProxy from the client namespace; return the seconds it
        took. Leftovers of an earlier lab (``ckb`` namespaces) are removed first. On any
        failure everything is torn down (logs kept) and BaselineError says why."""
        if not 1 <= nodes <= 9:
            raise ValueError(f"nodes {nodes}: 1 to 9")
        # refuse what keepalived would not take before building anything
        keepalived_conf(Node("n1", 1), nodes, advert_int, vrrp_version)
        self.down_stale()
        self.nodes = [Node(f"n{i}", i) for i in range(1, nodes + 1)]
        self.advert_int, self.vrrp_version = advert_int, vrrp_version
        start = time.monotonic()
        try:
            self._build()
            for n in self.nodes:
                self._start_node(n)
            self.wait_settled(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return time.monotonic() - start

    def _build(self) -> None:
        netns.add_namespace(SWITCH_NS)
        netns.add_bridge(SWITCH_NS, BRIDGE)
        netns.add_namespace(CLIENT_NS)
        netns.sysctl(CLIENT_NS, node_sysctls(ipv6=False))
        netns.add_veth(SWITCH_NS, f"{PREFIX}sc", CLIENT_NS, f"{PREFIX}nc", BRIDGE)
        for addr in CLIENT_SOURCES:
            netns.add_address(CLIENT_NS, f"{PREFIX}nc", f"{addr}/{PREFIXLEN}")
        netns.set_link(CLIENT_NS, f"{PREFIX}nc", up=True)
        for n in self.nodes:
            netns.add_namespace(n.ns)
            netns.sysctl(n.ns, node_sysctls(ipv6=False))
            netns.add_veth(SWITCH_NS, n.switch_if, n.ns, n.ifname, BRIDGE)
            netns.add_address(n.ns, n.ifname, f"{n.address}/{PREFIXLEN}")
            netns.set_link(n.ns, n.ifname, up=True)
            d = self.node_dir(n.name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "mode").write_text("ok\n")
            (d / "keepalived.conf").write_text(
                keepalived_conf(n, len(self.nodes), self.advert_int, self.vrrp_version)
            )
            (d / "haproxy.cfg").write_text(haproxy_cfg(n, len(self.nodes), d))

    def down(self) -> list[str]:
        """Kill every process of the lab's namespaces, delete them; return what was removed.
        Idempotent; also removes another ``ckb`` lab's leftovers (see ``down_stale``)."""
        removed = self.down_stale()
        for procs in self._procs.values():
            for proc in procs.values():
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
        self._procs.clear()
        return removed

    @staticmethod
    def down_stale() -> list[str]:
        """Remove every ``ckb`` namespace (SIGKILL to each process in it first), whoever made
        it: what a crashed run left. Every process of the lab lives in one of them, so none
        survives."""
        removed = []
        for ns in netns.list_namespaces(f"{PREFIX}-"):
            killed = netns.kill_all(ns)
            netns.delete_namespace(ns)
            removed.append(f"{ns} ({len(killed)} process(es) killed)")
        return removed

    # processes -----------------------------------------------------------------------------

    def _spawn(self, node: Node, what: str, argv: list[str]) -> subprocess.Popen[bytes]:
        d = self.node_dir(node.name)
        with open(d / f"{what}.log", "ab") as log:
            log.write(f"--- ckb lab: {what} started {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                netns.exec_argv(node.ns, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.setdefault(node.name, {})[what] = proc
        return proc

    def _start_node(self, n: Node) -> None:
        """App first (HAProxy marks a server DOWN at its first failed check: a server starts
        with just ``rise`` health), then HAProxy and keepalived. Pid files of a killed
        keepalived are removed: it refuses to start ("daemon is already running") when one
        names a live pid, and after a SIGKILL the pid may belong to anyone by now."""
        d = self.node_dir(n.name)
        self.start_backend(n.name)
        self._wait_app(n)
        for pidfile in ("keepalived.pid", "vrrp.pid", "checkers.pid", "haproxy.pid"):
            with contextlib.suppress(FileNotFoundError):
                (d / pidfile).unlink()
        self._spawn(n, "haproxy", ["haproxy", "-db", "-f", str(d / "haproxy.cfg")])
        argv = ["keepalived", "-n", "-l", "-D", "-f", str(d / "keepalived.conf")]
        argv += ["-p", str(d / "keepalived.pid"), "-r", str(d / "vrrp.pid")]
        argv += ["-c", str(d / "checkers.pid")]
        self._spawn(n, "keepalived", argv)

    def start_backend(self, node: str) -> int:
        """Start the node's stand-in app (``:8080`` on the node address); return its pid. A
        running one is kept."""
        n = self.node(node)
        proc = self._procs.get(node, {}).get("app")
        if proc is not None and proc.poll() is None:
            return proc.pid
        d = self.node_dir(node)
        argv = [self.python, str(APP), n.address, str(APP_PORT), str(d / "mode")]
        return self._spawn(n, "app", argv).pid

    def kill_backend(self, node: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Signal the node's app (SIGKILL: a crash); return its pid. BaselineError if it does
        not run."""
        proc = self._procs.get(node, {}).get("app")
        if proc is None or proc.poll() is not None:
            raise BaselineError(f"the app of {node} does not run")
        os.kill(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return proc.pid

    def malfunction(self, node: str, mode: str) -> None:
        """``500``: the app answers 500; ``hang``: SIGSTOP (accepts, answers nothing);
        ``ok``: SIGCONT and 200 again."""
        if mode not in ("500", "hang", "ok"):
            raise BaselineError(f"unknown mode {mode!r}: use 500, hang or ok")
        proc = self._procs.get(node, {}).get("app")
        if mode == "hang":
            if proc is None:
                raise BaselineError(f"the app of {node} does not run")
            os.kill(proc.pid, signal.SIGSTOP)
            return
        if mode == "ok" and proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        path = self.node_dir(node) / "mode"
        path.with_suffix(".tmp").write_text(f"{mode}\n")
        os.replace(path.with_suffix(".tmp"), path)

    def log_tails(self, lines: int = 8) -> str:
        out = []
        for n in self.nodes:
            for what in ("keepalived", "haproxy", "app"):
                log = self.node_dir(n.name) / f"{what}.log"
                with contextlib.suppress(OSError):
                    tail = log.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(out)

    # observation ---------------------------------------------------------------------------

    def holders(self, vip: str) -> set[str]:
        """Nodes whose interface has ``vip`` configured now (two during a split brain)."""
        return {
            n.name
            for n in self.nodes
            if any(a.split("/")[0] == vip for a in netns.addresses(n.ns, n.ifname))
        }

    def get(self, vip: str, timeout: float = 1.0, source: str | None = None) -> str | None:
        """One GET of ``url(vip)`` from the client namespace (from ``source``, default the
        client's first address): the body on a 200, else None."""
        argv = ["curl", "-s", "-f", "-m", f"{timeout:g}", self.url(vip)]
        if source:
            argv[1:1] = ["--interface", source]
        out = netns.run(netns.exec_argv(CLIENT_NS, argv), check=False, timeout=timeout + 5)
        return out.strip() or None

    def wait_settled(self, timeout: float = 20.0) -> float:
        """Wait until every VIP is held by its home node alone (by one node, when its home is
        off) and answers through HAProxy, and every running HAProxy has every server UP
        (a server of a node that is off never is: call this with every node on); return the
        seconds it took. BaselineError with log tails after ``timeout``."""
        start = time.monotonic()
        while True:
            on = self.powered()
            held = {v: self.holders(v) for v in self.vips}
            wrong = {
                v: h
                for v, h in held.items()
                if (h != {self.home(v)} if self.home(v) in on else len(h) != 1)
            }
            down = {n: self._not_up(n) for n in on}
            down = {n: servers for n, servers in down.items() if servers}
            dead = [v for v in self.vips if v not in wrong and self.get(v) is None]
            if not wrong and not dead and not down:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise BaselineError(
                    f"not settled after {timeout:g}s: holders {wrong}, not answering {dead}, "
                    f"servers not UP {down}\n" + self.log_tails()
                )
            time.sleep(0.1)

    def _not_up(self, node: str) -> list[str]:
        """Servers the node's HAProxy does not report UP (all of them while its socket is not
        there yet)."""
        try:
            states = self.server_states(node)
        except OSError:
            return [n.name for n in self.nodes]
        return [s for s in (n.name for n in self.nodes) if states.get(s) != "UP"]

    def haproxy(self, node: str, command: str) -> str:
        """One command on the node's HAProxy admin socket (a path socket: reachable from any
        namespace); its answer. A refused connection is retried for a second: under load
        HAProxy 2.6 was seen refusing one now and then (its listener paused), and a bench
        must not fail for that."""
        path = str(self.node_dir(node) / "haproxy.sock")
        for attempt in range(20):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2.0)
                    s.connect(path)
                    s.sendall(command.encode() + b"\n")
                    chunks = []
                    while chunk := s.recv(65536):
                        chunks.append(chunk)
                return b"".join(chunks).decode(errors="replace")
            except (ConnectionRefusedError, BlockingIOError):
                if attempt == 19:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def server_states(self, node: str) -> dict[str, str]:
        """What the node's HAProxy thinks of each backend server (``show stat``)."""
        return parse_stat(self.haproxy(node, "show stat"))

    def powered(self) -> list[str]:
        return [n.name for n in self.nodes if self._procs.get(n.name, {}).get("haproxy")]

    def start_client(
        self,
        out: Path,
        duration: float,
        *,
        urls: list[str] | None = None,
        interval: float = 0.01,
        timeout: float = 0.1,
        wait: float = 10.0,
    ) -> subprocess.Popen[bytes]:
        """Start the load generator (``corral.lab.client``) in the client namespace against
        ``urls`` (default: every VIP's) from every client source address, writing ``out``;
        return once its first request went out (its ``--ready`` file). The caller waits for
        it (it ends by itself after ``duration + timeout``)."""
        ready = out.with_name(out.name + ".ready")
        ready.unlink(missing_ok=True)
        argv = [self.python, "-m", "corral.lab.client", *(urls or map(self.url, self.vips))]
        argv += ["--interval", f"{interval:g}", "--timeout", f"{timeout:g}"]
        argv += ["--duration", f"{duration:g}", "--out", str(out), "--ready", str(ready)]
        for source in CLIENT_SOURCES:
            argv += ["--source", source]
        proc = subprocess.Popen(netns.exec_argv(CLIENT_NS, argv), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + wait
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise BaselineError(f"the client did not start (exit {proc.returncode})")
            time.sleep(0.01)
        return proc

    # faults --------------------------------------------------------------------------------

    def power_off(self, node: str) -> list[int]:
        """A power loss: NIC down, SIGKILL to every process in the node's namespace, every
        address but its own removed (a machine that returns holds no VIP), like
        ``corral.lab.lab.Lab.power_off``. Returns the pids killed; fine on a node that is off."""
        n = self.node(node)
        netns.set_link(n.ns, n.ifname, up=False)
        killed = netns.kill_all(n.ns)
        for proc in self._procs.pop(node, {}).values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        netns.flush_addresses_except(n.ns, n.ifname, f"{n.address}/{PREFIXLEN}")
        return killed

    def power_on(self, node: str) -> None:
        """NIC up, app, HAProxy and keepalived started again (the home node preempts: its VIP
        comes back to it). A node that is on is left alone."""
        n = self.node(node)
        if node in self.powered():
            return
        netns.set_link(n.ns, n.ifname, up=True)
        self._start_node(n)

    def cut_link(self, node: str) -> None:
        """The switch port goes down: the node is isolated, its processes keep running. The
        node's veth loses carrier, so its keepalived enters FAULT and releases its VIPs (no
        two holders; see ``isolate`` for a partition the node does not notice)."""
        netns.set_link(SWITCH_NS, self.node(node).switch_if, up=False)

    def heal_link(self, node: str) -> None:
        netns.set_link(SWITCH_NS, self.node(node).switch_if, up=True)

    def isolate(self, node: str, *, on: bool = True) -> None:
        """A partition the node cannot see: its switch port stops forwarding (bridge port
        state ``disabled``) while both veth ends keep their carrier, so keepalived stays
        MASTER of its VIPs and the other nodes take them too (two holders), unlike
        ``cut_link``, where the node sees no carrier and keepalived drops to FAULT and
        releases its VIPs. ``on=False`` forwards again. (netem 100 % loss would do the same;
        this machine's kernel has no netem.)"""
        port = self.node(node).switch_if
        state = "0" if on else "3"  # 0 disabled, 3 forwarding
        netns.run(["bridge", "-n", SWITCH_NS, "link", "set", "dev", port, "state", state])

    def kill_keepalived(self, node: str) -> list[int]:
        """SIGKILL the node's keepalived (parent and VRRP child): its VIPs stay configured
        (nobody removes them) while another node takes them over: two holders until someone
        intervenes. Returns the pids killed."""
        n = self.node(node)
        killed = []
        for pid in netns.pids(n.ns):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived":
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        proc = self._procs.get(node, {}).pop("keepalived", None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        return killed

    def set_server(self, server: str, state: str) -> None:
        """``set server api_cluster/<server> state <ready|drain|maint>`` on every powered
        node's HAProxy (each HAProxy balances over every backend)."""
        for name in self.powered():
            answer = self.haproxy(name, f"set server {BACKEND}/{server} state {state}")
            if answer.strip():
                raise BaselineError(f"HAProxy of {name}: {answer.strip()}")

    def wait_server(self, server: str, want: str = "UP", timeout: float = 30.0) -> float:
        """Wait until every powered node's HAProxy reports ``server`` as ``want``."""
        start = time.monotonic()
        while True:
            states = {n: self.server_states(n).get(server) for n in self.powered()}
            if all(s == want for s in states.values()):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise BaselineError(f"{server} not {want} after {timeout:g}s: {states}")
            time.sleep(0.1)

    def rolling_restart(
        self, *, drain: bool = False, down_time: float = 1.0
    ) -> list[dict[str, float]]:
        """Restart each node's app in turn as operators do today: stop it (SIGTERM, as
        ``systemctl restart`` does), ``down_time`` seconds later start it (a real API service
        takes about that long to listen), and go on to the next node once every HAProxy
        reports the server UP again. The common practice, and the default, is a plain restart
        (configuration tools restart services serially without touching HAProxy); with
        ``drain`` the server is first put in maintenance on every HAProxy (``set server ...
        state maint`` on the admin socket) and made ready again once the app answers. Returns
        per node the monotonic times of stop, start, and UP again."""
        steps = []
        for n in list(self.nodes):
            if n.name not in self.powered():
                continue
            if drain:
                self.set_server(n.name, "maint")
                self.wait_server(n.name, "MAINT")
            stopped = time.monotonic()
            self.kill_backend(n.name, signal.SIGTERM)
            time.sleep(down_time)
            started = time.monotonic()
            self.start_backend(n.name)
            self._wait_app(n)
            if drain:
                self.set_server(n.name, "ready")
            self.wait_server(n.name, "UP")
            steps.append({"stopped": stopped, "started": started, "up": time.monotonic()})
        return steps

    def _wait_app(self, n: Node, timeout: float = 10.0) -> None:
        """Until the app accepts connections (probed from its own namespace)."""
        deadline = time.monotonic() + timeout
        url = f"http://{n.address}:{APP_PORT}/"
        while time.monotonic() < deadline:
            argv = netns.exec_argv(n.ns, ["curl", "-s", "-o", "/dev/null", "-m", "1", url])
            if subprocess.run(argv, check=False, capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise BaselineError(f"the app of {n.name} does not answer after {timeout:g}s")
