"""The pure core of teaching (edge/teach.py): pooling, allowance, threshold, wire form."""

from __future__ import annotations

import numpy as np
import pytest

from edge.teach import (
    Guard,
    Taught,
    TeachError,
    absorb,
    confirm,
    derive_threshold,
    held_out_scores,
    pool,
)

pytestmark = pytest.mark.unit


def test_pool_keeps_the_maximum_of_each_cell() -> None:
    amap = np.zeros((224, 224), np.float32)
    amap[17, 200] = 5.0
    p = pool(amap, 28)
    assert p.shape == (28, 28) and p[2, 25] == 5.0 and p.sum() == 5.0
    assert pool(np.ones((4, 4)), 28).shape == (4, 4)  # small maps stay as they are
    with pytest.raises(ValueError):
        pool(np.ones(3), 28)


def test_absorb_allows_the_taught_departure_only_up_to_the_cap() -> None:
    g = Guard(cap=2.0)
    m = np.zeros((4, 4), np.float32)
    m[0, 0], m[3, 3] = 1.5, 9.0
    t = absorb(Taught(), m, configured=1.0, guard=g)
    assert t.version == 1 and t.allowance is not None
    assert t.allowance[0, 0] == 1.5 and t.allowance[3, 3] == 2.0  # capped at 2 x threshold
    assert t.score(m) == pytest.approx(7.0)  # the strong part still counts beyond the cap
    other = np.zeros((4, 4), np.float32)
    other[1, 2] = 3.0
    assert t.score(other) == 3.0  # elsewhere nothing changed
    again = absorb(t, m, 1.0, g)
    assert again.allowance_bytes() == t.allowance_bytes()  # taught twice = taught once
    with pytest.raises(TeachError, match="shape_mismatch"):
        absorb(t, np.zeros((2, 2)), 1.0, g)
    with pytest.raises(TeachError, match="bad_value"):
        absorb(Taught(), np.full((4, 4), np.nan), 1.0, g)


def test_threshold_comes_from_recent_good_frames_within_bounds() -> None:
    g = Guard(quantile=1.0, margin=1.0, max_raise=3.0)
    t = Taught()
    assert derive_threshold(t, [0.2, 0.5], [], configured=1.0, guard=g) is None  # not lowered
    assert derive_threshold(t, [0.2, 1.6], [], 1.0, g) == pytest.approx(1.6)
    assert derive_threshold(t, [0.2, 9.0], [], 1.0, g) == pytest.approx(3.0)  # at most 3x
    assert derive_threshold(t, [], [], 1.0, g) is None


def test_wire_form_round_trips_exactly_and_recall_counts_confirmed() -> None:
    m = np.zeros((3, 3), np.float32)
    m[1, 1] = 4.0
    t = confirm(Taught(), "k1", m)
    t = absorb(t, m * 0.5, 1.0, Guard())
    back = Taught.of(t.target())
    assert back.version == t.version and back.confirmed_keys == ("k1",)
    assert back.allowance_bytes() == t.allowance_bytes()
    assert back.confirmed_bytes() == t.confirmed_bytes()
    assert t.recall(1.0) == 1.0  # 4 - 2 = 2 >= 1
    assert absorb(t, m, 1.0, Guard()).recall(1.0) == 0.0  # fully allowed: missed
    assert confirm(t, "k1", m) is t  # confirmed once


def test_taught_frames_count_with_their_held_out_score() -> None:
    a = np.zeros((2, 2), np.float32)
    a[0, 0] = 5.0
    b = np.zeros((2, 2), np.float32)
    b[0, 0], b[1, 1] = 4.0, 2.0
    # a against b's allowance: 5 - 4 = 1; b against a's: max(4 - 5, 2 - 0) = 2
    assert held_out_scores([a, b], cap=10.0) == pytest.approx([1.0, 2.0])
    assert held_out_scores([a], cap=10.0) == [5.0]  # alone: its own score
    assert held_out_scores([a, b], cap=3.0) == pytest.approx([2.0, 2.0])  # caps apply
    g = Guard(quantile=1.0, margin=1.0, max_raise=10.0)
    assert derive_threshold(Taught(), [0.5], [a, b], 1.0, g) == pytest.approx(2.0)
