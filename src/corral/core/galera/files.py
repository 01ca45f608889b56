"""Reading what a MariaDB Galera node leaves in its data directory (pure parsers).

- ``grastate.dat`` (:func:`parse_grastate`): the saved position (``uuid``, ``seqno``) and
  ``safe_to_bootstrap``. Written by the provider; ``seqno: -1`` while the server runs and after
  a crash (then the position must be recovered from InnoDB with ``--wsrep-recover``).
- ``gvwstate.dat`` (:func:`parse_gvwstate`): the last primary component the node saw, which
  ``pc.recovery`` uses to re-form the cluster by itself. It exists only while the node is (or
  was, at a crash) in a primary component; a clean shutdown removes it.
- The log of ``mariadbd --wsrep-recover`` (:func:`parse_recovered`): the line
  ``WSREP: Recovered position: <uuid>:<seqno>`` (MariaDB may add ``,<gtid>`` after it).
- :func:`marked_safe_to_bootstrap`: the one change corral makes to a state file, on the node
  chosen to bootstrap.

Contract: every parser takes the file's text and its name (for messages) and returns the
frozen record of :mod:`corral.core.galera.state`, or raises :class:`GaleraFileError` naming the
file, the line and what is wrong. Nothing else is raised for any text (tested with hypothesis):
a corrupt file on one node must never crash the agent that reports it. Unknown keys are
ignored (newer providers add some); a key given twice is an error (which one would count?).
"""

from __future__ import annotations

import re

from corral.core.galera.state import GraState, NodeState, Position, SavedView

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RECOVERED = re.compile(r"WSREP: Recovered position:\s*(\S*)")
_SEQNO_MAX = 2**63 - 1  # the provider's seqno is a signed 64-bit integer


class GaleraFileError(ValueError):
    """A Galera state file (or recovery log) that cannot be read; the message names the file,
    the line (1-based; 0 when the problem is the whole file) and the problem."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {problem}")


def _uuid(text: str, source: str, line: int, field: str) -> str:
    value = text.strip().lower()
    if not _UUID.match(value):
        raise GaleraFileError(source, line, f"{field} {text.strip()!r} is not a UUID")
    return value


def _seqno(text: str, source: str, line: int) -> int:
    value = text.strip()
    if not re.fullmatch(r"-?\d{1,19}", value):
        raise GaleraFileError(source, line, f"seqno {value!r} is not an integer")
    number = int(value)
    if number < -1 or number > _SEQNO_MAX:
        raise GaleraFileError(source, line, f"seqno {number} is out of range (-1 or more)")
    return number


def _fields(text: str, source: str) -> dict[str, tuple[int, str]]:
    """``key: value`` lines (comments and blank lines skipped) -> {key: (line, value)}."""
    found: dict[str, tuple[int, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise GaleraFileError(source, number, f"expected 'key: value', found {line[:60]!r}")
        key = key.strip()
        if key in found:
            raise GaleraFileError(source, number, f"{key!r} given twice")
        found[key] = (number, value.strip())
    return found


def _required(fields: dict[str, tuple[int, str]], key: str, source: str) -> tuple[int, str]:
    if key not in fields:
        raise GaleraFileError(source, 0, f"no {key!r} line")
    return fields[key]


def parse_grastate(text: str, source: str = "grastate.dat") -> GraState:
    """The saved state in ``text`` (a grastate.dat). ``safe_to_bootstrap`` may be missing (files
    of providers before 3.19): then it is false, the cautious reading."""
    fields = _fields(text, source)
    line, value = _required(fields, "uuid", source)
    uuid = _uuid(value, source, line, "uuid")
    line, value = _required(fields, "seqno", source)
    seqno = _seqno(value, source, line)
    safe = False
    if "safe_to_bootstrap" in fields:
        line, value = fields["safe_to_bootstrap"]
        if value not in ("0", "1"):
            raise GaleraFileError(source, line, f"safe_to_bootstrap {value!r} is not 0 or 1")
        safe = value == "1"
    return GraState(Position(uuid, seqno), safe)


def _view_id(value: str, source: str, line: int) -> str:
    words = value.split()
    if len(words) != 3 or not words[2].isdigit():
        shape = "'<type> <uuid> <seq>'"
        raise GaleraFileError(source, line, f"view_id {value.strip()!r} is not {shape}")
    _uuid(words[1], source, line, "view_id's uuid")
    return " ".join([words[0], words[1].lower(), str(int(words[2]))])


def parse_gvwstate(text: str, source: str = "gvwstate.dat") -> SavedView:
    """The saved primary view in ``text`` (a gvwstate.dat): this node's UUID, the view id
    (``<type> <uuid> <seq>``, kept as one string) and the members' UUIDs."""
    single: dict[str, str] = {}  # my_uuid, view_id
    members: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # #vwbeg / #vwend frame the view
        key, colon, value = line.partition(":")
        key = key.strip()
        if not colon:
            raise GaleraFileError(source, number, f"expected 'key: value', found {line[:60]!r}")
        if key in ("my_uuid", "view_id") and key in single:
            raise GaleraFileError(source, number, f"{key!r} given twice")
        if key == "my_uuid":
            single[key] = _uuid(value, source, number, "my_uuid")
        elif key == "view_id":
            single[key] = _view_id(value, source, number)
        elif key == "member":
            members.add(_uuid((value.split() or [""])[0], source, number, "member"))
    for key in ("my_uuid", "view_id"):
        if key not in single:
            raise GaleraFileError(source, 0, f"no {key!r} line")
    if not members:
        raise GaleraFileError(source, 0, "a view without members")
    return SavedView(single["my_uuid"], single["view_id"], frozenset(members))


def parse_recovered(text: str, source: str = "--wsrep-recover log") -> Position:
    """The position ``mariadbd --wsrep-recover`` logged (its last ``Recovered position``
    line). GaleraFileError when there is none: the recovery failed (the log says why)."""
    found: tuple[int, str, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _RECOVERED.search(line)
        if match:
            uuid, _, seqno = match.group(1).split(",")[0].rpartition(":")  # ",<gtid>" dropped
            found = (number, uuid, seqno)
    if found is None:
        raise GaleraFileError(source, 0, "no 'WSREP: Recovered position' line")
    number, uuid, seqno = found
    return Position(_uuid(uuid, source, number, "uuid"), _seqno(seqno, source, number))


def marked_safe_to_bootstrap(text: str, source: str = "grastate.dat") -> str:
    """``text`` (a grastate.dat) with ``safe_to_bootstrap: 1``, every other line as it was:
    what the chosen node's file must say before Galera lets it bootstrap after a crash (it
    refuses ``--wsrep-new-cluster`` on a node whose file says 0). GaleraFileError when the
    text is not a valid grastate.dat."""
    parse_grastate(text, source)
    lines = text.splitlines()
    kept = [line for line in lines if line.partition(":")[0].strip() != "safe_to_bootstrap"]
    return "\n".join([*kept, "safe_to_bootstrap: 1"]) + "\n"


def node_state(
    node: str,
    *,
    grastate: str | None,
    gvwstate: str | None = None,
    recover_log: str | None = None,
    running: bool = False,
) -> NodeState:
    """One node's report from the texts of its files (None: the file does not exist; for
    ``recover_log``: no recovery was run). Raises GaleraFileError for a malformed one."""
    return NodeState(
        node=node,
        grastate=None if grastate is None else parse_grastate(grastate),
        recovered=None if recover_log is None else parse_recovered(recover_log),
        view=None if gvwstate is None else parse_gvwstate(gvwstate),
        running=running,
    )
