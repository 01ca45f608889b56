"""Standalone gossip member: ``python -m corral.net.node``.

Runs one :class:`~corral.net.gossip.GossipNode` over real UDP/TCP until SIGTERM/SIGINT (then
leaves gracefully) or ``--run-for`` seconds. ``--status-file`` is rewritten atomically every
``--status-every`` seconds with the member table; ``--events-file`` gets one JSON line per
membership change, stamped with ``time.monotonic()`` (comparable across processes on one host),
which is how ``bench/membership.py`` measures detection times.

    python -m corral.net.node --generate-key > cluster.key
    python -m corral.net.node --name n1 --bind 127.0.0.1:7946 --key-file cluster.key
    python -m corral.net.node --name n2 --bind 127.0.0.1:7947 --seed 127.0.0.1:7946 \\
        --key-file cluster.key --profile lan --status-file /tmp/n2.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from corral.core.membership import MemberChanged, NodeMeta, profile
from corral.fileio import write_atomic
from corral.net.gossip import GossipNode
from corral.net.keyring import Keyring, KeyringError, generate_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m corral.net.node", description=__doc__.split("\n")[0]
    )
    p.add_argument("--generate-key", action="store_true", help="print a new key and exit")
    p.add_argument("--name", help="member name (unique in the cluster)")
    p.add_argument("--bind", help="host:port for UDP and TCP")
    p.add_argument("--advertise", help="host:port others should use (default: --bind)")
    p.add_argument("--seed", action="append", default=[], help="host:port of a member to join")
    p.add_argument("--key-file", help="base64 keys, one per line, primary first")
    p.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    p.add_argument("--no-lifeguard", action="store_true", help="plain SWIM (for comparison)")
    p.add_argument("--role", action="append", default=[], help="metadata: a role (repeatable)")
    p.add_argument("--site", default="", help="metadata: site name")
    p.add_argument("--api", default="", help="metadata: agent API host:port")
    p.add_argument("--status-file", help="rewrite this JSON file with the member table")
    p.add_argument("--status-every", type=float, default=1.0)
    p.add_argument("--events-file", help="append membership changes here (JSON lines)")
    p.add_argument("--run-for", type=float, default=0.0, help="exit after this many seconds")
    args = p.parse_args(argv)
    if not args.generate_key and not (args.name and args.bind and args.key_file):
        p.error("--name, --bind and --key-file are required")
    return args


def status(node: GossipNode) -> dict[str, Any]:
    """The status-file document."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "name": node.name,
        "address": node.address,
        "pid": os.getpid(),
        "joined": node.joined,
        "incarnation": node.core.incarnation,
        "health_score": node.core.health_score,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "monotonic": time.monotonic(),
        "members": [
            {
                "name": m.name,
                "addr": m.addr,
                "state": m.state,
                "incarnation": m.incarnation,
                "last_seen": m.last_seen,
                "roles": list(m.meta.roles),
                "site": m.meta.site,
                "api": m.meta.api,
            }
            for m in node.members()
        ],
        "stats": node.stats(),
    }


async def run(args: argparse.Namespace, events: IO[str] | None) -> int:
    keyring = Keyring.from_file(args.key_file)
    config = profile(args.profile, lifeguard=not args.no_lifeguard)
    meta = NodeMeta(tuple(args.role), args.site, args.api)
    node = GossipNode.udp(
        args.name, args.bind, keyring, config, seeds=args.seed, meta=meta, advertise=args.advertise
    )
    if events is not None:

        def record(change: MemberChanged) -> None:
            m = change.member
            row = {
                "t": time.monotonic(),
                "observer": args.name,
                "member": m.name,
                "state": m.state.label,
                "incarnation": m.incarnation,
                "source": change.source,
            }
            events.write(json.dumps(row) + "\n")
            events.flush()

        node.subscribe(record)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    deadline = time.monotonic() + args.run_for if args.run_for > 0 else float("inf")
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if args.status_file:
                write_atomic(Path(args.status_file), json.dumps(status(node)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), min(args.status_every, deadline - time.monotonic())
                )
    finally:
        await node.stop(leave=True)
        if args.status_file:
            write_atomic(Path(args.status_file), json.dumps(status(node)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generate_key:
        print(generate_key())
        return 0
    try:
        with contextlib.ExitStack() as stack:
            events = stack.enter_context(open(args.events_file, "a")) if args.events_file else None
            return asyncio.run(run(args, events))
    except (KeyringError, OSError, ValueError) as exc:
        print(f"corral.net.node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
