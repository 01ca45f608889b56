"""The network-namespace lab: one namespace per node on a bridge, a client, real agents, faults.

Layout (``<id>`` is 6 hex digits of the lab directory's path, so two labs never share a name
and ``down --force`` can find a lab's leftovers from its directory alone):

- ``crl-<id>-switch``: holds bridge ``crlbr-<id>`` and the switch ends ``crl<id>s<i>`` of the
  veth pairs (the host's root namespace is never touched);
- ``crl-<id>-node-<node>``: ``lo`` and ``crl<id>n<i>`` with the node's spec address, prefix
  length of the spec's VIP subnet that holds it (default /24); ``crl-<id>-client`` likewise
  (``crl<id>nc``) with ``.250`` of the subnet, or its last free usable address;
- node sysctls: ``ip_nonlocal_bind=1`` (HAProxy binds VIPs it does not hold yet),
  ``arp_ignore=1`` (answer ARP only for addresses on the receiving interface: a node never
  answers for a VIP it does not hold), ``arp_announce=2`` (ARP requests carry the interface's
  own address, never a VIP that may move), IPv6 off on IPv4-only labs (quiet captures);
- the lab directory: ``lab.json`` (the state: everything made, agent pids, power), ``spec.yaml``
  (the stand-in spec), ``fence_lab`` (the fence agent), ``modes/``, ``nodes/<node>/`` (the
  agent's state dir, ``agent.log``); with ``data_dir`` (``Lab.up``) the ``nodes/`` tree is
  there instead: etcd's data and the agent's state on a disk of the caller's choice (the
  default lab root ``/run`` is a tmpfs on most systems, where an fsync costs nothing).

Contract: ``Lab.up`` records each object in ``lab.json`` before creating it, so that ``down``
after a crash at any point removes it; ``down`` kills every process of every lab namespace
(``ip netns pids``, SIGKILL, until none is left), deletes the namespaces and the state file, and
keeps logs (with a ``data_dir``, it also deletes the etcd members' data there); it is
idempotent. Faults act on one node: see each method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral.fileio import private_dir
from corral.lab import gateway, labtls, netns, procs
from corral.lab import servers as servers_mod
from corral.lab.layout import LabError, lab_id, node_sysctls, ns_prefix, plan
from corral.lab.modes import mode_dir, mode_file
from corral.lab.services import ServiceFaults
from corral.lab.status import lab_status

LAB_ROOT = Path("/run/corral-lab")
STATEFUL = Path("/usr/lib/ocf/resource.d/pacemaker/Stateful")
APP = Path(__file__).with_name("app.py")
__all__ = ["Lab", "LabError", "lab_id", "node_sysctls", "ns_prefix", "plan"]
STATE = "lab.json"
FENCE_SCRIPT = "fence_lab"


# --- the lab -------------------------------------------------------------------------------


class Lab(ServiceFaults):
    """A lab in ``lab_dir`` (see the module docstring). Creating the object does nothing."""

    def __init__(self, lab_dir: Path, python: str = sys.executable) -> None:
        self.dir = lab_dir.resolve()
        self.python = python
        self._children: list[subprocess.Popen[bytes]] = []
        self._held = threading.local()  # this thread's hold of the lab lock (see _lock)

    # state file ----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.dir / STATE

    def state(self) -> dict[str, Any]:
        """The recorded state; LabError when there is no lab here."""
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {self.dir} (no {STATE})") from None
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.state_path}: unreadable ({exc}); use down --force") from None
        return data

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """The lab lock (``flock`` of ``lab.lock``): every process and thread that edits the
        state or changes a node's power holds it. Re-entrant within one thread (a power-on
        holds it across its check and the agent start, which edits the state); other threads,
        even of this process, wait (each takes its own open file description). Never fork
        (without exec) while holding it: the child would share the lock's open file."""
        held: list[Any] = self._held.__dict__.setdefault("stack", [])
        if held:
            held.append(None)
            try:
                yield
            finally:
                held.pop()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lab.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held.append(lock)
            try:
                yield
            finally:
                held.pop()

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the state under the lab lock (the fence agent writes it too)."""
        with self._lock():
            data = self.state()
            yield data
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state_path)

    def node(self, name: str) -> dict[str, Any]:
        nodes: dict[str, Any] = self.state()["nodes"]
        if name not in nodes:
            raise LabError(f"unknown node {name!r}; the lab has {', '.join(nodes)}")
        record: dict[str, Any] = nodes[name]
        return record

    @property
    def spec_file(self) -> Path:
        return self.dir / "spec.yaml"

    def log_path(self, node: str) -> Path:
        return Path(self.node(node)["state_dir"]) / "agent.log"

    # up ------------------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        spec_file: Path,
        lab_dir: Path | None = None,
        *,
        nodes: int | None = None,
        timeout: float = 60.0,
        python: str = sys.executable,
        fence_action: str | None = None,
        data_dir: Path | None = None,
        tls: bool = False,
        servers: str = "standin",
        probe: servers_mod.Probe = servers_mod.installed,
    ) -> Lab:
        """Build the lab for ``spec_file`` and wait until every agent registered.

        Raises LabError (after tearing down what it made; logs are kept) when the spec cannot
        be rewritten, a lab already runs in the directory, or the cluster does not answer
        within ``timeout`` seconds (the message holds the tails of the agent logs).
        ``fence_action`` (off/reboot/none): what the cluster's fencing does to a lost node
        through the lab fence device; default that of the spec's fence device. ``data_dir``:
        where the nodes' state dirs go (``<data_dir>/nodes/<node>``, made if missing; a
        previous run's ``nodes/`` there is removed first); default the lab directory.
        ``servers``: ``auto``, ``real`` or ``standin`` (the default: the quick HTTP stand-ins),
        what the spec's galera and rabbitmq resources run (:mod:`corral.lab.servers`; ``probe``
        says what this machine lacks for a kind, tests inject one).
        """
        text = spec_file.read_text()
        if lab_dir is None:
            from corral.spec import load_spec_text

            lab_dir = LAB_ROOT / load_spec_text(text, str(spec_file)).cluster
        lab = cls(lab_dir, python)
        if lab.state_path.exists():
            raise LabError(f"a lab is up in {lab.dir}; run `corral lab down --dir {lab.dir}`")
        try:
            lab._build(spec_file, text, nodes, fence_action, data_dir, tls, (servers, probe))
            for name in lab.state()["nodes"]:
                lab._start_agent(name)
            labtls.grant_admin(lab, timeout)  # TLS: etcd auth is on, lab-admin needs a user
            lab.wait_online(timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                lab.down(force=True)
            raise
        return lab

    def _build(
        self,
        spec_file: Path,
        text: str,
        nodes: int | None,
        fence_action: str | None,
        data_dir: Path | None,
        tls: bool = False,
        servers: tuple[str, servers_mod.Probe] = ("standin", servers_mod.installed),
    ) -> None:
        from corral.lab.standins import StandinOptions, rewrite
        from corral.spec import load_spec_text

        data_dir = data_dir.resolve() if data_dir is not None else None
        old = [self.dir / sub for sub in ("nodes", "modes", "etcd", "ca", "admin-tls", "root-tls")]
        old += [self.dir / "servers", self.dir / "secrets"]
        for sub in [*old, *([data_dir / "nodes"] if data_dir else [])]:
            shutil.rmtree(sub, ignore_errors=True)  # a previous run's etcd data is not ours
        self.dir.mkdir(parents=True, exist_ok=True)
        fence = self.dir / FENCE_SCRIPT
        fence.write_text(f'#!/bin/sh\nexec {self.python} -m corral.lab.fence "$@"\n')
        fence.chmod(0o755)
        opts = StandinOptions(
            lab_dir=self.dir,
            python=self.python,
            app=str(APP),
            fence_command=str(fence),
            nodes=nodes,
            stateful=STATEFUL.exists(),
            fence_action=fence_action,
        )
        try:
            real, root, server_notes = servers_mod.plan_servers(self.dir, text, *servers)
            opts = dataclasses.replace(opts, real=frozenset(real), run_as_root=root)
            rewritten = rewrite(text, opts, str(spec_file))
        except ValueError as exc:  # SpecError is a ValueError too
            raise LabError(f"{spec_file}: {exc}") from None
        spec_text, admin = labtls.prepare(self.dir, rewritten.text) if tls else (rewritten.text, [])
        self.spec_file.write_text(spec_text)
        spec = load_spec_text(spec_text, str(self.spec_file))
        state = plan(spec, self.dir, self.spec_file, data_dir)
        state["notes"], state["tls"] = [*server_notes, *rewritten.notes], admin
        state["servers"] = sorted(real)  # the hosts files below are removed by namespace
        self._write(state)  # first: whatever is made below, down finds it
        if real:
            servers_mod.prepare(self.dir, spec, state)
        self._make_switch(state)
        self._make_client(state)
        mode_dir(self.dir).mkdir(parents=True, exist_ok=True)
        for name in state["nodes"]:
            self._make_node(state, name)

    def _make_switch(self, state: dict[str, Any]) -> None:
        netns.add_namespace(state["switch_ns"])
        netns.add_bridge(state["switch_ns"], state["bridge"])

    def _make_client(self, state: dict[str, Any]) -> None:
        c = state["client"]
        netns.add_namespace(c["ns"])
        netns.add_veth(state["switch_ns"], c["switch_if"], c["ns"], c["ifname"], state["bridge"])
        for cidr in c["addresses"]:
            netns.add_address(c["ns"], c["ifname"], cidr)
        netns.set_link(c["ns"], c["ifname"], up=True)

    def _make_node(self, state: dict[str, Any], name: str) -> None:
        from corral.spec import load_spec_text

        n = state["nodes"][name]
        netns.add_namespace(n["ns"])
        netns.sysctl(n["ns"], node_sysctls(state["ipv6"]))
        netns.add_veth(state["switch_ns"], n["switch_if"], n["ns"], n["ifname"], state["bridge"])
        netns.add_address(n["ns"], n["ifname"], n["address"])
        netns.set_link(n["ns"], n["ifname"], up=True)
        private_dir(Path(n["state_dir"]))
        for res in load_spec_text(self.spec_file.read_text()).resources:
            mode_file(self.dir, res, name).write_text("ok\n")

    def _start_agent(self, name: str) -> int:
        n = self.node(name)
        argv = [self.python, "-m", "corral.cli.main", "agent", "--spec", str(self.spec_file)]
        argv += ["--node", name, "--state-dir", n["state_dir"]]
        if os.environ.get("CORRAL_LAB_VERBOSE"):  # every agent decision in agent.log
            argv.append("-v")
        with open(Path(n["state_dir"]) / "agent.log", "ab") as log:
            log.write(f"--- corral lab: agent started {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                netns.exec_argv(n["ns"], argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives a fence agent's process group
            )
        self._children.append(proc)
        with self._edit() as state:
            state["nodes"][name].update(agent_pid=proc.pid, powered=True)
        return proc.pid

    # the cluster, as seen from the client namespace -----------------------------------------

    def store_endpoints(self) -> list[str]:
        """``http(s)://address:port`` of every core member's client URL (the embedded store)."""
        from corral.spec import load_spec_text

        spec = load_spec_text(self.spec_file.read_text())
        port = spec.store.embedded.client_port if spec.store.embedded else 2379
        scheme = "https" if spec.store_tls is not None else "http"
        return [f"{scheme}://{spec.nodes[name].address}:{port}" for name in spec.core_nodes()]

    def registrations(self) -> dict[str, dict[str, Any]] | None:
        """Node registrations in the store (``nodes/<node>`` records: address, agent pid),
        read from the client namespace through etcd's JSON gateway; None when no member
        answers (an etcd error answer counts as none: the next member is asked)."""
        state, ends = self.state(), self.store_endpoints()
        root = f"/corral/{state['cluster']}/nodes/".encode()
        found = gateway.range_prefix(state["client"]["ns"], ends, root, tls=state.get("tls", ()))
        return None if found is None else {k: v for k, v in found.items() if isinstance(v, dict)}

    def online_nodes(self) -> set[str]:
        return set(self.registrations() or {})

    def wait_online(self, nodes: list[str] | None = None, timeout: float = 60.0) -> float:
        """Wait until ``nodes`` (default: every powered-on node) are registered by the agents
        this lab started (the record's pid is the agent's: a lease left by an agent that was
        killed does not count); return the seconds it took. LabError with the agent logs'
        tails after ``timeout``."""
        state = self.state()
        want = nodes or [n for n, rec in state["nodes"].items() if rec["powered"]]
        start = time.monotonic()
        while True:
            # re-read: a fence agent may have power-cycled a node (new agent pid) meanwhile
            pids = {n: rec["agent_pid"] for n, rec in self.state()["nodes"].items()}
            found = self.registrations() or {}
            missing = [n for n in want if n not in found or found[n].get("pid") != pids[n]]
            if not missing:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise LabError(
                    f"cluster {state['cluster']}: {', '.join(missing)} not registered after "
                    f"{timeout:g}s\n" + self.log_tails()
                )
            time.sleep(0.3)

    def log_tails(self, lines: int = 12) -> str:
        out = []
        for rec in self.state()["nodes"].values():
            log = Path(rec["state_dir"]) / "agent.log"
            try:
                tail = log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tail = ["(no log)"]
            out.append(f"--- {log} (last {lines} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def cluster_status(self, timeout: float = 20.0) -> dict[str, Any]:
        """``corral status --json`` run in the client namespace (what an operator sees)."""
        argv = [self.python, "-m", "corral.cli.main", "status", "--spec", str(self.spec_file)]
        proc = subprocess.run(
            self.exec_argv("client", [*argv, "--json"]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise LabError(f"corral status failed: {proc.stderr.strip()}")
        view: dict[str, Any] = json.loads(proc.stdout)
        return view

    def exec_argv(self, target: str, argv: list[str]) -> list[str]:
        """The command line running ``argv`` in node ``target``'s namespace, or the client's
        when ``target`` is ``client`` (a node of that name wins)."""
        state = self.state()
        argv = labtls.with_env(state.get("tls"), argv)  # the CLI presents the lab's admin
        if target in state["nodes"]:
            return netns.exec_argv(state["nodes"][target]["ns"], argv)
        if target == "client":
            return netns.exec_argv(state["client"]["ns"], argv)
        raise LabError(f"unknown node {target!r}; the lab has {', '.join(state['nodes'])}, client")

    # down ----------------------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """The lab's namespaces that exist: recorded ones and, by name pattern, any other."""
        recorded: list[str] = []
        with contextlib.suppress(LabError):
            s = self.state()
            recorded = [s["switch_ns"], s["client"]["ns"], *(n["ns"] for n in s["nodes"].values())]
        found = set(netns.list_namespaces(ns_prefix(self.dir)))
        return sorted(found | {ns for ns in recorded if netns.exists(ns)})

    def down(self, force: bool = False) -> list[str]:
        """Stop every process of the lab and delete its namespaces and state; return what was
        removed. Without ``force`` an unreadable state file is an error; with it, the lab's
        namespaces are found by name pattern. Idempotent: nothing left is not an error."""
        state: dict[str, Any] = {}
        try:
            state = self.state()
        except LabError as exc:
            if not self.state_path.exists() and not netns.list_namespaces(ns_prefix(self.dir)):
                return []
            if not force:
                raise LabError(f"{exc}; leftovers exist: use --force") from None
        removed = []
        for ns in self.namespaces():
            killed = netns.kill_all(ns)
            netns.delete_namespace(ns)
            removed.append(f"{ns} ({len(killed)} process(es) killed)")
        removed += servers_mod.clean(self.dir, ns_prefix(self.dir))  # after every server ended
        for child in self._children:
            with contextlib.suppress(OSError):
                child.wait(timeout=1)
        self._children.clear()
        if state.get("data_dir"):  # the members' data on a real disk (their logs are kept)
            for rec in state["nodes"].values():
                for member in Path(rec["state_dir"]).glob("etcd/*"):
                    if member.is_dir():
                        shutil.rmtree(member, ignore_errors=True)
        for name in (STATE, "lab.tmp", "lab.lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
        return removed

    # status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the lab made and how it is now (:func:`corral.lab.status.lab_status`)."""
        return lab_status(self.state())

    # faults --------------------------------------------------------------------------------

    def power_off(self, node: str) -> list[int]:
        """A power loss: the node's NIC goes down, every process in its namespace gets SIGKILL,
        and every address but its own is removed (a machine that returns holds no VIP).
        Returns the pids killed. Powering off a node that is off is fine. Atomic: the lab
        lock is held throughout, so a concurrent power-on (a fence agent's reboot, the
        harness) acts before or after it, never in the middle."""
        with self._lock():
            n = self.node(node)
            with self._edit() as state:
                state["nodes"][node].update(powered=False, agent_pid=None, frozen=False)
            netns.set_link(n["ns"], n["ifname"], up=False)
            killed = netns.kill_all(n["ns"])
            self._reap()
            netns.flush_addresses_except(n["ns"], n["ifname"], n["address"])
        return killed

    def power_on(self, node: str) -> int:
        """NIC up and the agent started again (which starts its etcd member); returns the agent
        pid. A node that is on keeps its agent (its pid is returned); a node that is on but
        whose agent died (``kill_agent``) gets a new one, as systemd would start it. Atomic:
        the check and the start happen under the lab lock, so two concurrent power-ons (a fence
        agent's reboot racing the harness) start exactly one agent."""
        with self._lock():
            n = self.node(node)
            if n["powered"] and _alive(n["agent_pid"]):
                return int(n["agent_pid"])
            netns.set_link(n["ns"], n["ifname"], up=True)
            return self._start_agent(node)

    def kill_agent(self, node: str, sig: int = signal.SIGKILL, wait: float = 0.0) -> int:
        """Send ``sig`` to the node's agent alone and wait up to ``wait`` s for it to exit;
        returns its pid. SIGKILL: its lease guard, etcd member and services keep running, as
        after an agent crash; SIGTERM: a planned stop (the lease goes to the guard). ``power_on``
        starts it again."""
        with self._lock():
            pid = self.node(node)["agent_pid"]
            if not _alive(pid):
                raise LabError(f"{node}: no agent running")
            os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
                self._reap()
            self._reap()
        return int(pid)

    def kill_etcd(self, node: str) -> int:
        """SIGKILL the node's embedded etcd member (the agent's supervisor restarts it);
        returns its pid. LabError when the node runs none."""
        ns = self.node(node)["ns"]
        for pid in netns.pids(ns):
            proc = procs.read_proc(pid)
            if proc is not None and proc.alive and procs.is_etcd(proc, node):
                os.kill(pid, signal.SIGKILL)
                return pid
        raise LabError(f"{node}: no etcd member running")

    def break_etcd(self, node: str) -> int:
        """A member that cannot start (a disk fault): its data directory is moved aside and a
        plain file put in its place, then the member is SIGKILLed; every restart of the
        agent's supervisor exits at once, with a backoff that grows. Returns the pid killed.
        :meth:`repair_etcd` undoes it."""
        data = Path(self.node(node)["state_dir"]) / "etcd" / node
        data.rename(data.with_name(node + ".broken"))
        data.write_text("corral lab: a broken disk\n")
        return self.kill_etcd(node)

    def repair_etcd(self, node: str) -> None:
        """Put the member's data directory back (the supervisor's next restart succeeds)."""
        data = Path(self.node(node)["state_dir"]) / "etcd" / node
        if data.with_name(node + ".broken").exists():
            data.unlink(missing_ok=True)
            data.with_name(node + ".broken").rename(data)

    def freeze(self, node: str) -> list[int]:
        """SIGSTOP every process of the node (a VM paused, a machine stalled): nothing runs,
        the kernel still holds its addresses and answers ARP. Returns the pids stopped.
        Repeated until no new process shows up (one may have forked meanwhile)."""
        with self._edit() as state:
            state["nodes"][node]["frozen"] = True
        return self._signal_all(node, signal.SIGSTOP)

    def thaw(self, node: str) -> list[int]:
        """SIGCONT every process of the node; returns the pids continued. The signals go
        first, the state edit after: a fence agent of the frozen node may hold the lab lock
        (it was frozen in the middle of a power-off), and only the thaw releases it."""
        continued = self._signal_all(node, signal.SIGCONT)
        with self._edit() as state:
            state["nodes"][node]["frozen"] = False
        return continued

    def _signal_all(self, node: str, sig: signal.Signals) -> list[int]:
        ns = self.node(node)["ns"]
        done: set[int] = set()
        for _ in range(20):
            new = [p for p in netns.pids(ns) if p not in done and p != os.getpid()]
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                done.add(pid)
        return sorted(done)

    def cut_link(self, node: str) -> None:
        """The switch port goes down: the node is isolated, its processes keep running."""
        netns.set_link(self.state()["switch_ns"], self.node(node)["switch_if"], up=False)

    def heal_link(self, node: str) -> None:
        netns.set_link(self.state()["switch_ns"], self.node(node)["switch_if"], up=True)

    def partition(self, node: str) -> None:
        """Cut the node off from the other nodes only: its link stays up and it still answers
        the client (the partition in which a VIP could answer from two nodes at once)."""
        state = self.state()
        peers = [n["switch_if"] for name, n in state["nodes"].items() if name != node]
        netns.partition_port(state["switch_ns"], self.node(node)["switch_if"], peers)

    def heal_partition(self, node: str) -> None:
        netns.heal_port(self.state()["switch_ns"], self.node(node)["switch_if"])

    def cut_store_peers(self) -> None:
        """Drop the embedded store's peer traffic between every two nodes (its members lose
        quorum and their leader) while everything else passes: the nodes, their agents and
        every member still answer each other and the client."""
        from corral.spec import load_spec_text

        spec = load_spec_text(self.spec_file.read_text())
        port = spec.store.embedded.peer_port if spec.store.embedded else 2380
        netns.block_tcp_port(self.state()["switch_ns"], "store-peers", port)

    def heal_store_peers(self) -> None:
        netns.unblock(self.state()["switch_ns"], "store-peers")

    def netem(self, node: str, *, loss: float = 0.0, delay: float = 0.0) -> None:
        """Loss (percent) and delay (seconds) on both ends of the node's link, so each direction
        sees them (a round trip gets twice ``delay``). Replaces earlier netem settings."""
        n = self.node(node)
        netns.set_netem(n["ns"], n["ifname"], loss=loss, delay=delay)
        netns.set_netem(self.state()["switch_ns"], n["switch_if"], loss=loss, delay=delay)

    def clear_netem(self, node: str) -> None:
        n = self.node(node)
        netns.clear_netem(n["ns"], n["ifname"])
        netns.clear_netem(self.state()["switch_ns"], n["switch_if"])

    def _reap(self) -> None:
        for child in list(self._children):
            if child.poll() is not None:
                self._children.remove(child)


def _alive(pid: int | None) -> bool:
    """Whether the agent ``pid`` lab.json names still lives. Not "is it in the node's
    namespace": for a moment after the start, ``ip netns exec`` has not entered it yet, and a
    power-on that looked there then started a second agent (seen in chaos runs)."""
    proc = procs.read_proc(pid) if pid is not None else None
    return proc is not None and proc.alive
