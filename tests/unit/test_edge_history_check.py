"""The history check used by the fault tests finds lost, duplicate and unexpected frames."""

from __future__ import annotations

import pytest
from edge_stack import history_check

pytestmark = pytest.mark.unit

S = "s/l/st/camera/c1"


def keys(*seqs: int) -> dict[str, int | None]:
    return {f"{S}#0:{q}": q for q in seqs}


def test_all_stored_or_gapped_is_clean() -> None:
    pub = keys(0, 1, 2, 3, 4)
    stored = [f"{S}#0:{q}" for q in (0, 1, 4)]
    gaps = [(f"{S}#0:2!shed", 2, 2, "shed"), (f"{S}#0:gap:3-3", 3, 3, "missing")]
    got = history_check(pub, stored, gaps, S)
    assert got == {
        "published": 5,
        "stored": 3,
        "gapped": 2,
        "lost": 0,
        "duplicate": 0,
        "unexpected": 0,
    }


def test_lost_duplicate_unexpected_are_counted() -> None:
    pub = keys(0, 1, 2)
    stored = [f"{S}#0:0", f"{S}#0:0", f"{S}#0:9", "other/l/st/camera/c9#0:1"]
    got = history_check(pub, stored, [], S)
    assert (got["lost"], got["duplicate"], got["unexpected"]) == (2, 1, 1)


def test_unsequenced_frames_gapped_by_key() -> None:
    pub: dict[str, int | None] = {f"{S}#r:abc": None}
    got = history_check(pub, [], [(f"{S}#r:abc!failover", None, None, "failover")], S)
    assert got["lost"] == 0 and got["gapped"] == 1
