"""Which Galera members rule 1 holds to the node lease (pure): safety rule 1g.

Rule 1 stops an exclusive instance when its node cannot renew its lease, because the
controller may start it elsewhere (rule 2). A Galera member that *joined* a Primary component
is not such an instance: nothing starts "it" elsewhere, every other node runs its own member,
and what keeps two Primary components from forming is Galera's own quorum (a member cut off
from the majority turns non-Primary and refuses clients by itself). Stopping joined members
when the store goes away only turns an etcd outage into a database outage.

The one Galera act that Galera's quorum does not protect is the bootstrap
(``--wsrep-new-cluster`` starts a Primary component of one, whatever the others do): that is
corral's exclusive decision (rule 6, the claim under the claimant's lease). So:

- a member started as a **joiner** (a Primary component ran elsewhere) is *joined*: rule 1
  does not hold it (not self-fenced, not listed for the lease guard, kept through a lapse);
- a member started as the **bootstrap** node, or found running by a new agent (``adopted``:
  how it started is unknown), is held to the lease until a read of the claim shows that the
  claim no longer names this node (the controller clears it once the claimant is Primary).
  A claim that could not be read (the store is away) keeps it held;
- a member whose mariadbd does not run is held (it is nothing; starting it again needs a
  fresh lease in any case: every start and promote of a Galera member still keeps rule 1).
"""

from __future__ import annotations

from typing import Literal

StartedAs = Literal["bootstrap", "join", "adopted"]


def joined(running: bool, started_as: StartedAs | None, claim_names_me: bool | None) -> bool:
    """Whether a member is *joined* (rule 1g: not held to the node lease).

    ``running``: its mariadbd runs; ``started_as``: how this agent started it (None: not
    started); ``claim_names_me``: the last read of the bootstrap claim (True: it names this
    node; False: it does not, or there is none; None: not read, or the read failed)."""
    if not running or started_as is None:
        return False
    if started_as == "join":
        return True
    return claim_names_me is False
