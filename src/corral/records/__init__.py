"""The records corral keeps in the store, typed and versioned: the wire contract between
agents, the controller, the CLI and the lab, also between two versions of corral during a
rolling upgrade.

Every record is a JSON object (readable with ``etcdctl get``), one frozen dataclass here with
``parse(raw) -> record | None``, ``read(raw)`` (raises :class:`Malformed` with the reason) and
``dump() -> bytes``. Keys: :class:`corral.store.Keys`. The records and their layouts:
:mod:`corral.records.cluster` (``nodes/``, ``fenced/``, ``status/``, ``assign/``,
``systemic/``),
:mod:`corral.records.admin` (``admin/``), :mod:`corral.records.agent` (``failcounts/``,
``requests/``, ``lb/``, ``members/``), :mod:`corral.records.events` (``events/``),
:mod:`corral.records.keys` (``gossip-key``, ``keys/ack/``, ``keys/rotation``),
:mod:`corral.records.galera` (``galera/<resource>/``: reports, the bootstrap claim, the writer);
:mod:`corral.records.alerts` (``alerts/``: the cursor, the duties, the delivery log);
:mod:`corral.records.store` reads a whole range and builds the scheduler's snapshot.

The version contract (``"v"``):

- Every record this version writes carries ``"v": 1`` (:data:`VERSION`).
- A record without ``v`` is version 0, written by corral before versions; it reads exactly as
  that version read it (version 1 added ``v`` and changed no layout, so that agents of version
  0 read what version 1 writes during the upgrade too).
- A field this version does not know (a newer agent's) is ignored.
- A record with a higher ``v`` than this version knows is read for the fields it knows: a
  newer version may add fields but keeps the meaning of these (what breaks that needs a new
  key, not a new ``v``), so that old and new agents work side by side during an upgrade.
- A malformed record (not JSON, not an object, a field of the wrong type, ``v`` not a
  number) is skipped, never a crash: ``parse`` returns None, ``read`` says why, and
  :func:`read_records` lists it in ``skipped`` with its key, revision and reason. A reader
  of the store uses ``parse_kv(kv)``: it also counts the skip in :data:`DROPS` and logs it
  once per key and revision (:mod:`corral.records.drops`).
- Rewriting a record (an operator's compare-and-swap edit of an ``admin/`` record) keeps the
  fields this version knows only.
"""

from corral.records.admin import (
    AdminRecords,
    BansRecord,
    MaintenanceRecord,
    MovesRecord,
    StandbyRecord,
    TicketsRecord,
)
from corral.records.agent import FailCountRecord, LbRecord, MemberRow, MembersRecord, RequestRecord
from corral.records.alerts import AlertCursor, DeliveryRecord, DutyRecord
from corral.records.cluster import (
    AssignedInstance,
    AssignRecord,
    FencedRecord,
    RegistrationRecord,
    StatusInstance,
    StatusRecord,
    SystemicRecord,
)
from corral.records.codec import VERSION, Malformed, Record, decode, encode
from corral.records.drops import DROPS, RecordDrops
from corral.records.events import Event
from corral.records.galera import (
    BootstrapClaim,
    GaleraRecords,
    ReportRecord,
    WriterRecord,
    read_galera,
)
from corral.records.keys import KeyAckRecord, KeyringRecord, RotationRecord, fingerprint
from corral.records.store import (
    Skipped,
    StoreRecords,
    node_states,
    read_records,
    snapshot,
    snapshot_from_kvs,
    states,
)

__all__ = [
    "DROPS",
    "VERSION",
    "AdminRecords",
    "AlertCursor",
    "AssignRecord",
    "AssignedInstance",
    "BansRecord",
    "BootstrapClaim",
    "DeliveryRecord",
    "DutyRecord",
    "Event",
    "FailCountRecord",
    "FencedRecord",
    "GaleraRecords",
    "KeyAckRecord",
    "KeyringRecord",
    "LbRecord",
    "MaintenanceRecord",
    "Malformed",
    "MemberRow",
    "MembersRecord",
    "MovesRecord",
    "Record",
    "RecordDrops",
    "RegistrationRecord",
    "ReportRecord",
    "RequestRecord",
    "RotationRecord",
    "Skipped",
    "StandbyRecord",
    "StatusInstance",
    "StatusRecord",
    "StoreRecords",
    "SystemicRecord",
    "TicketsRecord",
    "WriterRecord",
    "decode",
    "encode",
    "fingerprint",
    "node_states",
    "read_galera",
    "read_records",
    "snapshot",
    "snapshot_from_kvs",
    "states",
]
