"""Sequence tracking: missing seqs become gaps after the reorder timeout; duplicates known."""

from __future__ import annotations

import pytest

from edge.gaps import GapTracker, Missing, SeqStatus

pytestmark = pytest.mark.unit

S = "s/l/st/camera/c1"


def test_in_order_stream_has_no_gaps() -> None:
    t = GapTracker(timeout_s=2.0)
    assert t.observe(S, 0, 5, 0.0) is SeqStatus.FIRST
    for seq in range(6, 20):
        assert t.observe(S, 0, seq, 0.1) is SeqStatus.IN_ORDER
    assert t.expire(100.0) == []


def test_missing_seq_reported_only_after_timeout() -> None:
    t = GapTracker(timeout_s=2.0)
    t.observe(S, 0, 1, 0.0)
    assert t.observe(S, 0, 4, 1.0) is SeqStatus.AHEAD
    assert t.open_count() == 2
    assert t.expire(2.9) == []
    assert t.expire(3.0) == [Missing(S, 0, 2, 3)]
    assert t.expire(10.0) == []  # reported once
    assert t.open_count() == 0


def test_late_arrival_within_timeout_closes_the_hole() -> None:
    t = GapTracker(timeout_s=2.0)
    t.observe(S, 0, 1, 0.0)
    t.observe(S, 0, 6, 0.5)  # 2..5 awaited
    assert t.observe(S, 0, 3, 1.0) is SeqStatus.LATE
    assert t.observe(S, 0, 4, 1.1) is SeqStatus.LATE
    gaps = t.expire(5.0)
    assert gaps == [Missing(S, 0, 2, 2), Missing(S, 0, 5, 5)]
    assert sum(g.count for g in gaps) == 2


def test_duplicate_and_late_after_gap() -> None:
    t = GapTracker(timeout_s=1.0)
    t.observe(S, 0, 1, 0.0)
    t.observe(S, 0, 2, 0.0)
    assert t.observe(S, 0, 2, 0.1) is SeqStatus.DUPLICATE
    assert t.observe(S, 0, 1, 0.1) is SeqStatus.DUPLICATE
    t.observe(S, 0, 5, 0.2)
    assert t.expire(1.5) == [Missing(S, 0, 3, 4)]
    assert t.observe(S, 0, 3, 1.6) is SeqStatus.LATE_AFTER_GAP


def test_publisher_epoch_is_a_separate_sequence() -> None:
    t = GapTracker(timeout_s=1.0)
    t.observe(S, 0, 100, 0.0)
    assert t.observe(S, 1, 0, 0.1) is SeqStatus.FIRST  # restarted publisher
    assert t.observe(S, 1, 1, 0.2) is SeqStatus.IN_ORDER
    assert t.expire(10.0) == []


def test_open_ranges_are_bounded() -> None:
    t = GapTracker(timeout_s=100.0, max_open=3)
    t.observe(S, 0, 0, 0.0)
    for seq in range(2, 12, 2):  # holes at 1, 3, 5, 7, 9
        t.observe(S, 0, seq, 0.0)
    early = t.expire(0.0)
    assert early == [Missing(S, 0, 1, 1), Missing(S, 0, 3, 3)]
    assert t.open_count() == 3


def test_forget_drops_a_stream() -> None:
    t = GapTracker(timeout_s=1.0)
    t.observe(S, 0, 0, 0.0)
    t.observe(S, 0, 10, 0.0)
    assert t.forget(S) == 1
    assert t.expire(5.0) == []
    assert t.observe(S, 0, 11, 5.0) is SeqStatus.FIRST


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GapTracker(timeout_s=0)
