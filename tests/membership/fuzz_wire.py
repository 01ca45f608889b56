"""libFuzzer harness (atheris) for the envelope and the codec; not collected by pytest.

    .venv/bin/python tests/membership/fuzz_wire.py -atheris_runs=200000

Contract under test: ``Wire.open`` returns a packet or ``None`` and ``decode_messages`` raises
only ``DecodeError``, whatever the bytes. Any other exception is a crash that libFuzzer reports.
``test_fuzz.py`` runs a short session of it when atheris is installed.
"""

from __future__ import annotations

import contextlib
import sys

import atheris  # type: ignore[import-untyped,unused-ignore]

with atheris.instrument_imports():
    from corral.core.membership import Ack, Alive, NodeMeta, Ping
    from corral.net.codec import DecodeError, decode_messages
    from corral.net.keyring import Keyring
    from corral.net.wire import Wire

RING = Keyring([b"k" * 32])
SENDER = Wire("alice", RING, boot=1)
RECEIVER = Wire("bob", RING, max_skew=1e12)
SEEDS = [SENDER.seal((Ping(1, "bob"), Alive("carol", 3, "c:1", NodeMeta(("lb",), "s", "a"))))]
SEEDS.append(SENDER.seal((Ack(7),)))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 0:
        with contextlib.suppress(DecodeError):
            decode_messages(rest, 1400)
    elif mode == 1:
        RECEIVER.open(rest)
    else:
        # Mutate a valid sealed packet: the authentication must catch every change.
        base = bytearray(SEEDS[len(rest) % len(SEEDS)])
        for i, b in enumerate(rest[:16]):
            base[(i * 31 + b) % len(base)] ^= b or 1
        assert RECEIVER.open(bytes(base)) is None or bytes(base) in SEEDS


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
