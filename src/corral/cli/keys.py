"""``corral keys rotate`` and ``corral keys status``: the gossip key, changed with no restart.

A rotation is three writes of the keyring record (``gossip-key``), each a compare-and-swap on
the record's revision and the rotation record's (``keys/rotation``), each made only once every
live member acknowledged the keyring version before it (``keys/ack/<node>``, written by each
agent when its gossip member applied it). The phases and why every member keeps talking
through them: :mod:`corral.core.keyrot`. What this module adds is I/O: reading those records,
waiting (bounded by ``--timeout`` per phase), writing, and saying what happened.

- A member that does not acknowledge in time stops the rotation with its name, in a phase
  where every member still talks; running the command again goes on from there (the phase
  is read from the store). An unfinished rotation found at start is resumed.
- Two rotations at once: the second write of the same phase fails its compare-and-swap, and
  that run stops with nothing written.
- Each write carries its event (kind ``keys``, writer ``keys``) in the same transaction.
- No key material is printed: keys are shown by fingerprint (:func:`corral.records.fingerprint`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from corral.auth.audit import audited
from corral.cli.audit import whoami
from corral.cli.cluster import ETCD_HELP, open_store, spec_or_exit
from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.keyrot import (
    PHASE_NUMBER,
    Phase,
    Rotation,
    Step,
    laggards,
    next_step,
    phase,
    required,
    stopped_text,
)
from corral.net.keyring import generate_key
from corral.records import (
    Event,
    KeyAckRecord,
    KeyringRecord,
    MembersRecord,
    RotationRecord,
    fingerprint,
)
from corral.store import Compare, EtcdStore, Keys, Put, Store, StoreError

POLL = 0.05  # seconds between reads while waiting for acknowledgements
TIMEOUT = 30.0  # default seconds each phase may wait for every member
EVENT_NODE = "keys"  # the writer named in the rotation's events (`corral events`)
DOING = {
    "add": "added, accepted only",
    "use": "made primary",
    "remove": "kept alone: the old keys retired",
}


class RotateError(Exception):
    """The rotation stopped; the message says why, and in which state the cluster is."""


@dataclass
class KeyState:
    """What a rotation reads: the keyring and its revision, the rotation record and its
    revision (0: none), registered nodes, published gossip views, acknowledgements."""

    keyring: KeyringRecord | None = None
    revision: int = 0
    rotation: RotationRecord | None = None
    rotation_revision: int = 0
    registered: set[str] = field(default_factory=set)
    views: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    acks: dict[str, KeyAckRecord] = field(default_factory=dict)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return self.keyring.fingerprints if self.keyring is not None else ()

    @property
    def plan(self) -> Rotation | None:
        r = self.rotation
        return None if r is None else Rotation(r.new, r.old, r.finished is not None)

    def phase(self) -> tuple[Phase, str]:
        return phase(self.fingerprints, self.plan)

    def members(self) -> set[str]:
        return required(self.registered, self.views)

    def late(self) -> list[str]:
        acks = {n: a.revision for n, a in self.acks.items()}
        return laggards(self.revision, acks, self.members())


def _names(kvs: list[Any], prefix: bytes) -> list[tuple[str, bytes]]:
    return [(kv.key[len(prefix) :].decode(errors="replace"), kv.value) for kv in kvs]


async def read_state(store: Store, keys: Keys) -> KeyState:
    """One look at the records a rotation needs (several reads; each record as of its read)."""
    out = KeyState()
    ring = await store.get(keys.gossip_key)
    if ring is not None:
        out.keyring, out.revision = KeyringRecord.parse(ring.value), ring.mod_revision
    rot = await store.get(keys.key_rotation)
    if rot is not None:
        out.rotation, out.rotation_revision = RotationRecord.parse(rot.value), rot.mod_revision
    nodes = await store.range(keys.nodes())
    out.registered = {name for name, _ in _names(nodes.kvs, keys.nodes())}
    members = keys.prefix("members")
    for name, raw in _names((await store.range(members)).kvs, members):
        if (view := MembersRecord.parse(raw)) is not None:
            out.views[name] = [(row.name, row.state) for row in view.view]
    for name, raw in _names((await store.range(keys.key_acks())).kvs, keys.key_acks()):
        if (ack := KeyAckRecord.parse(raw)) is not None:
            out.acks[name] = ack
    return out


@dataclass
class PhaseResult:
    """One phase written: its keyring ``revision``, when it was written (the rotator's clock)
    and the seconds until every live member had applied it."""

    action: str
    revision: int
    written: float
    applied_s: float = 0.0


@dataclass
class Rotator:
    """One run of ``corral keys rotate`` against ``store`` (see the module docstring)."""

    store: Store
    keys: Keys
    timeout: float = TIMEOUT
    poll: float = POLL
    say: Callable[[str], None] = print
    clock: Clock = field(default_factory=MonotonicClock)
    wall: Callable[[], float] = time.time
    fresh: Callable[[], bytes] = lambda: base64.b64decode(generate_key())
    by: str = field(default_factory=lambda: f"{socket.gethostname()} pid {os.getpid()}")
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    results: list[PhaseResult] = field(default_factory=list)

    async def run(self) -> list[PhaseResult]:
        """Rotate (or finish the rotation under way); :class:`RotateError` when it stops."""
        state = await read_state(self.store, self.keys)
        if state.keyring is None:
            raise RotateError(
                "no readable gossip keyring in the store (an agent creates it at its first "
                "start; `corral keys status` says more)"
            )
        now, _ = state.phase()
        if now != "idle" and state.rotation is not None:
            r = state.rotation
            self.say(f"resuming the rotation to key {r.new} started by {r.by} ({now})")
        key = self.fresh()
        while True:
            written = self.results[-1].written if self.results else None
            state, waited = await self._settled(state, written)
            if self.results:
                self.results[-1].applied_s = waited
                self.say(f"  applied by {', '.join(sorted(state.members()))} in {waited:.2f}s")
            step = next_step(state.fingerprints, state.plan, fingerprint(key))
            if step.action == "refuse":
                raise RotateError(step.why)
            state = await self._write(state, step, key)
            if step.action == "finish":
                return self.results

    async def _settled(self, state: KeyState, since: float | None) -> tuple[KeyState, float]:
        """``state`` once every live member acknowledged its keyring revision, and how long
        since ``since`` (when it was written; None: since now) that took; :class:`RotateError`
        after ``timeout`` or when another run writes."""
        start = self.clock.now() if since is None else since
        while late := state.late():
            if self.clock.now() - start >= self.timeout:
                now = state.phase()[0]
                raise RotateError(stopped_text(now, late, state.revision, self.timeout))
            await asyncio.sleep(self.poll)
            again = await read_state(self.store, self.keys)
            if (again.revision, again.rotation_revision) != (
                state.revision,
                state.rotation_revision,
            ):
                raise RotateError(self._changed(state, again))
            state = again
        return state, self.clock.now() - start

    async def _write(self, state: KeyState, step: Step, key: bytes) -> KeyState:
        """Write ``step`` with a compare-and-swap on both records' revisions."""
        assert state.keyring is not None and step.rotation is not None
        compares = [
            Compare(self.keys.gossip_key, "mod_revision", "==", state.revision),
            Compare(self.keys.key_rotation, "mod_revision", "==", state.rotation_revision)
            if state.rotation_revision
            else Compare.missing(self.keys.key_rotation),
        ]
        known = {**state.keyring.by_fingerprint(), fingerprint(key): key}
        puts = [Put(self.keys.gossip_key, self._ring(step, known))]
        if step.action == "finish":
            puts = []
        if step.action in ("add", "finish"):
            puts.append(Put(self.keys.key_rotation, self._rotation(state, step).dump()))
        puts.append(self._event(state, step))  # rule 5: the change and its reason, one txn
        done = await self.store.txn(compares, puts)
        written = self.clock.now()
        if not done.succeeded:
            raise RotateError(self._changed(state, await read_state(self.store, self.keys)))
        after = await read_state(self.store, self.keys)
        if step.action == "finish":
            self.say(f"rotation to key {step.rotation.new} finished")
        else:
            number = PHASE_NUMBER[step.action]
            fp = step.rotation.new
            self.say(f"phase {number}/3: key {fp} {DOING[step.action]} (revision {after.revision})")
            self.results.append(PhaseResult(step.action, after.revision, written))
        return after

    def _event(self, state: KeyState, step: Step) -> Put:
        assert step.rotation is not None
        fp, live = step.rotation.new, len(state.members())
        reason = {
            "add": f"phase 1/3: key {fp} added, accepted only",
            "use": f"phase 2/3: key {fp} made primary",
            "remove": f"phase 3/3: keys {', '.join(step.rotation.old)} retired, {fp} alone",
            "finish": f"rotation to key {fp} finished",
        }[step.action]
        why = f"gossip key {reason} ({live} live member(s) applied revision {state.revision}, "
        why += f"by {self.by})"
        now = self.wall()
        key = self.keys.event_key(int(now * 1e9), EVENT_NODE)
        return Put(key, Event(now, EVENT_NODE, "", "keys", why).dump())

    @staticmethod
    def _ring(step: Step, known: dict[str, bytes]) -> bytes:
        return KeyringRecord(tuple(known[fp] for fp in step.keys)).dump()

    def _rotation(self, state: KeyState, step: Step) -> RotationRecord:
        assert step.rotation is not None
        if step.action == "add":
            r = step.rotation
            return RotationRecord(self.run_id, r.new, r.old, self.by, self.wall())
        assert state.rotation is not None
        finished = self.wall()
        return RotationRecord(**{**state.rotation.__dict__, "finished": finished})

    @staticmethod
    def _changed(before: KeyState, after: KeyState) -> str:
        r = after.rotation
        who = f" (rotation record: started by {r.by}, run {r.id})" if r is not None else ""
        return (
            f"the gossip keyring changed under this rotation (revision {before.revision} -> "
            f"{after.revision}, rotation record {before.rotation_revision} -> "
            f"{after.rotation_revision}): another `corral keys rotate` is running or ran"
            f"{who}; this run wrote nothing more. See `corral keys status`."
        )


def status_view(state: KeyState) -> dict[str, Any]:
    """``corral keys status`` as plain data: fingerprints and revisions, never keys."""
    now, why = state.phase()
    r = state.rotation
    nodes = {}
    for name in sorted(state.members() | set(state.acks)):
        ack = state.acks.get(name)
        nodes[name] = {
            "live": name in state.members(),
            "registered": name in state.registered,
            "applied": ack.revision if ack else None,
            "current": bool(ack and ack.revision >= state.revision),
            "primary": ack.keys[0] if ack and ack.keys else None,
        }
    return {
        "phase": now,
        "problem": why or None,
        "revision": state.revision,
        "keys": list(state.fingerprints),
        "rotation": None if r is None else r.to_value(),
        "nodes": nodes,
    }


def _render_status(view: dict[str, Any]) -> None:
    keys = view["keys"]
    click.echo(f"phase: {view['phase']}" + (f" ({view['problem']})" if view["problem"] else ""))
    click.echo(f"keyring revision {view['revision']}: " + (", ".join(keys) or "none"))
    r = view["rotation"]
    if r is not None:
        end = "under way" if r["finished"] is None else "finished " + _when(r["finished"])
        click.echo(f"rotation to {r['new']} started {_when(r['started'])} by {r['by']}, {end}")
    for name, n in view["nodes"].items():
        applied = "nothing acknowledged" if n["applied"] is None else f"applied {n['applied']}"
        flags = ("current" if n["current"] else "behind") if n["live"] else "not live"
        click.echo(f"  {name}: {applied} ({flags}), primary {n['primary'] or '-'}")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


@click.group(name="keys")
def keys_group() -> None:
    """The gossip encryption key: rotate it, see where every node stands."""


def _store(spec_file: str, etcd: str | None) -> tuple[EtcdStore, Keys]:
    """The CLI's store (the identity it presents: TLS files or etcd password auth)."""
    spec = spec_or_exit(spec_file)
    return open_store(spec, etcd, timeout=3.0), Keys(spec.cluster)


@keys_group.command("rotate")
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=TIMEOUT,
    show_default=True,
    help="Seconds each phase waits for every live member to apply the keyring.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def rotate_cmd(spec_file: str, etcd: str | None, timeout: float, as_json: bool) -> None:
    """Install a new gossip key, switch to it, retire the old one: no restart, every member
    confirming each phase. Resumes an unfinished rotation; safe to run again."""
    store, keys = _store(spec_file, etcd)
    say = (lambda _text: None) if as_json else click.echo
    rotator = Rotator(store, keys, timeout=timeout, say=say)
    start = time.monotonic()

    async def go() -> str | None:
        try:
            me = await whoami(store, keys)
            warn = lambda text: click.echo(f"warning: {text}", err=True)  # noqa: E731
            await audited(store, keys, me, "keys rotate", rotator.run, wall=time.time, warn=warn)
            return None
        except RotateError as exc:
            return str(exc)
        except StoreError as exc:  # a write's outcome may be unknown: the next run reads it
            return (
                f"the store failed during the rotation ({exc}); whatever was written is a "
                "phase where everyone talks: run `corral keys rotate` again to go on"
            )
        finally:
            await store.close()

    error = asyncio.run(go())
    seconds = time.monotonic() - start
    if as_json:
        phases = [
            {"action": r.action, "revision": r.revision, "applied_s": r.applied_s}
            for r in rotator.results
        ]
        click.echo(json.dumps({"ok": error is None, "error": error, "seconds": seconds,
                               "phases": phases}))  # fmt: skip
    elif error is None:
        click.echo(f"done in {seconds:.2f}s")
    if error is not None:
        raise click.ClickException(error)


@keys_group.command("status")
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option("--json", "as_json", is_flag=True)
def status_cmd(spec_file: str, etcd: str | None, as_json: bool) -> None:
    """The rotation's phase, the keys (fingerprints) and the keyring each node applied."""
    store, keys = _store(spec_file, etcd)

    async def read() -> KeyState:
        try:
            return await read_state(store, keys)
        finally:
            await store.close()

    view = status_view(asyncio.run(read()))
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        _render_status(view)
