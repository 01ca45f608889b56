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


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "1e999", "198.18.0.1/24", "::1", "a@b", "a[1]@b", "1s"])
    # beyond a float, and a duration that parses to an infinite one: found crashes
    | st.sampled_from([10**400, -(10**400), "9" * 400 + "s", 1e308 * 10])
)


def _paths(value: object, here: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*here, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*here, i))
    return out


def _get(value: object, path: tuple[object, ...]) -> object:
    for step in path:
        value = value[step]  # type: ignore[index]
    return value


@st.composite
def tree_mutated(draw: st.DrawFn, seeds: Sequence[object], max_steps: int = 3) -> object:
    """One of ``seeds`` (parsed YAML or JSON: dicts, lists, scalars) with 1..``max_steps``
    structural edits: a value replaced by a scalar, by another part of the same document (a
    list where a mapping belongs, a node where a resource belongs) or by an empty container;
    a key removed; a key added. Reaches the validators behind a syntactically valid input."""
    import copy

    doc = copy.deepcopy(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_steps))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["scalar", "splice", "empty", "delete", "add"]))
        parent = _get(doc, path[:-1]) if path else None
        if op == "add":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(st.text(max_size=8) | st.sampled_from(["v", "on", "x"]))] = draw(
                    SCALARS
                )
            elif isinstance(target, list):
                target.append(copy.deepcopy(_get(doc, draw(st.sampled_from(paths)))))
            continue
        if not path:
            continue
        if op == "delete":
            del parent[path[-1]]  # type: ignore[attr-defined]
            continue
        new: object
        if op == "scalar":
            new = draw(SCALARS)
        elif op == "splice":
            new = copy.deepcopy(_get(doc, draw(st.sampled_from(paths))))
        else:
            new = draw(st.sampled_from([{}, [], ""]))
        parent[path[-1]] = new  # type: ignore[index]
    return doc
