"""Bearer tokens and roles at the API (corral.auth.tokens' records, a real scrypt check)."""

from __future__ import annotations

import pytest

from corral.api.auth import RANK, Refused, Tokens, bearer
from corral.auth.tokens import TokenRecord, issue

VIEWER, VIEWER_ID, VIEWER_REC = issue("vic", "viewer", by="root", now=0.0)
OPS, OPS_ID, OPS_REC = issue("olga", "operator", by="root", now=0.0)


class Records:
    def __init__(self) -> None:
        self.reads = 0
        self.stored = {VIEWER_ID: VIEWER_REC, OPS_ID: OPS_REC}

    async def __call__(self, found: str) -> TokenRecord | None:
        self.reads += 1
        return self.stored.get(found)


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (None, "needs a token"),
        ("", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer    ", "malformed"),
        ("Bearer not-a-corral-token", "not valid"),
        ("Bearer corral_zz_" + "x" * 43, "not valid"),
    ],
)
def test_malformed_headers_are_401_with_a_reason(header: str | None, said: str) -> None:
    with pytest.raises(Refused, match=said) as caught:
        bearer(header)
    assert caught.value.status == 401


async def test_roles_rank_and_a_wrong_secret_is_refused() -> None:
    tokens = Tokens(Records(), lambda: 0.0)
    assert (await tokens.identity(f"Bearer {VIEWER}", "viewer")).name == "vic"
    with pytest.raises(Refused, match="vic has role viewer; this needs operator") as caught:
        await tokens.identity(f"bearer {VIEWER}", "operator")
    assert caught.value.status == 403
    assert (await tokens.identity(f"Bearer {OPS}", "operator")).role == "operator"
    forged = VIEWER[:-4] + ("AAAA" if not VIEWER.endswith("AAAA") else "BBBB")
    with pytest.raises(Refused, match="not valid") as caught:
        await tokens.identity(f"Bearer {forged}", "viewer")
    assert caught.value.status == 401
    assert RANK["agent"] == RANK["viewer"] < RANK["operator"] < RANK["admin"]


async def test_answers_are_cached_for_a_while_and_revocation_counts_after() -> None:
    records, now = Records(), [0.0]
    tokens = Tokens(records, lambda: now[0])
    for _ in range(5):
        await tokens.identity(f"Bearer {VIEWER}", "viewer")
    assert records.reads == 1
    del records.stored[VIEWER_ID]  # revoked
    now[0] = 11.0  # past the TTL
    with pytest.raises(Refused, match="not valid"):
        await tokens.identity(f"Bearer {VIEWER}", "viewer")
