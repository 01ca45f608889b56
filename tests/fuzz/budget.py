"""The fuzzing budget and the mutation strategy every fuzz module shares.

``make test`` runs each property a few dozen to a few hundred times (the whole directory in
about 15 s). A long run multiplies every budget::

    CORRAL_FUZZ=long pytest tests/fuzz          # x100 (minutes per module)
    CORRAL_FUZZ=20 pytest tests/fuzz -k dns     # any factor

Failures print a ``@reproduce_failure`` blob; the failing input belongs in the test as an
``@example`` once the parser is fixed (a regression test that runs every time).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def factor() -> int:
    """How many times the default budget ``CORRAL_FUZZ`` asks for (1 when unset)."""
    value = os.environ.get("CORRAL_FUZZ", "").strip().lower()
    if value == "long":
        return 100
    return int(value) if value.isdigit() and int(value) > 0 else 1


def fuzz(examples: int) -> settings:
    """Settings for a property run ``examples`` times in ``make test`` (times :func:`factor`)."""
    return settings(
        max_examples=examples * factor(),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_steps: int = 4) -> bytes:
    """One of ``seeds`` (valid inputs) changed by 1..``max_steps`` edits: a byte flipped or set
    to a boundary value, a cut (truncation), bytes inserted or appended, a span deleted or
    repeated. Mutations of valid input get past the first checks of a parser, where random
    bytes almost never do."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_steps))):
        size = len(data)
        at = draw(st.integers(0, size))
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "append", "delete", "repeat"]))
        if op == "flip" and at < size:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < size:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x22, 0x5B, 0x7B, 0x0A]))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
    return bytes(data)
