"""Watch who answers ARP for some addresses, from the client's side (lab tool).

``python -m corral.lab.arpwatch --iface IF --duration S [--interval 0.02] IP [IP ...]`` runs in
the client namespace and asks, for every IP in turn, who has it, over and over until the
duration is over (a hard bound). It prints one JSON object per line:
``{"t": CLOCK_MONOTONIC, "ip": "...", "macs": [...]}`` (``macs`` sorted; empty = nobody
answered within the probe window). CLOCK_MONOTONIC is shared by every namespace of a machine, so
the bench and tests line these samples up with the fault times they record.

Two MACs in one sample for one IP is the split brain corral must never show.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from ipaddress import IPv4Address

from corral.net.arp import arp_who_has


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--window", type=float, default=0.03, help="seconds to wait for answers")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between rounds")
    parser.add_argument("ips", nargs="+", type=IPv4Address)
    args = parser.parse_args(argv)
    end = time.monotonic() + min(args.duration, 600.0)
    while time.monotonic() < end:
        for ip in args.ips:
            try:
                macs = sorted(arp_who_has(args.iface, ip, args.window))
            except OSError as exc:
                print(json.dumps({"t": time.monotonic(), "ip": str(ip), "error": str(exc)}))
                continue
            print(json.dumps({"t": time.monotonic(), "ip": str(ip), "macs": macs}), flush=True)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
