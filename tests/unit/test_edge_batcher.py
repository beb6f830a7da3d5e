"""Micro-batching: max batch, max wait, bounded queues, newest frame wins per camera."""

from __future__ import annotations

import threading
import time

import pytest

from edge.batcher import Batcher

pytestmark = pytest.mark.unit


def test_full_batch_returns_at_once() -> None:
    b: Batcher[int] = Batcher(max_batch=4, max_wait_s=10.0, camera_queue=16, total_queue=64)
    for i in range(5):
        assert b.put("c1", i) == []
    t0 = time.monotonic()
    batch = b.take(timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert [q.item for q in batch] == [0, 1, 2, 3]
    assert b.depth() == 1


def test_fast_arrivals_wait_at_most_max_wait_for_company() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=0.05, camera_queue=16, total_queue=64)
    for i in range(3):  # arriving microseconds apart: the batch could fill in time
        b.put("c1", i)
    t0 = time.monotonic()
    batch = b.take(timeout=5)
    waited = time.monotonic() - t0
    assert [q.item for q in batch] == [0, 1, 2]
    assert 0.03 <= waited < 1.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_slow_arrivals_go_at_once() -> None:
    clock = Clock()
    b: Batcher[int] = Batcher(
        max_batch=8, max_wait_s=0.05, camera_queue=16, total_queue=64, clock=clock
    )
    b.put("c1", 1)
    clock.t += 1.0  # one frame a second: waiting 50 ms would never fill a batch
    b.put("c1", 2)
    assert [q.item for q in b.take(timeout=5)] == [1, 2]
    b.put("c1", 3)  # the first frame after idling: no company expected either
    assert [q.item for q in b.take(timeout=5)] == [3]


def test_take_times_out_empty() -> None:
    b: Batcher[int] = Batcher(max_batch=2, max_wait_s=0.01, camera_queue=4, total_queue=8)
    assert b.take(timeout=0.05) == []


def test_camera_queue_full_sheds_oldest_of_that_camera() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=1.0, camera_queue=3, total_queue=64)
    for i in range(3):
        b.put("c1", i)
    b.put("c2", 100)
    assert b.put("c1", 3) == [0]
    assert b.put("c1", 4) == [1]
    assert b.shed_total == 2
    assert b.depth() == 4
    items = sorted(q.item for q in b.take(timeout=2))
    assert items == [2, 3, 4, 100]


def test_total_queue_full_sheds_from_the_fullest_camera() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=1.0, camera_queue=10, total_queue=4)
    for i in range(3):
        b.put("big", i)
    b.put("small", 50)
    assert b.put("small", 51) == [0]
    assert b.depth() == 4


def test_round_robin_over_cameras() -> None:
    b: Batcher[str] = Batcher(max_batch=4, max_wait_s=1.0, camera_queue=16, total_queue=64)
    for i in range(6):
        b.put("a", f"a{i}")
    b.put("b", "b0")
    b.put("c", "c0")
    batch = [q.item for q in b.take(timeout=2)]
    assert set(batch) >= {"b0", "c0"}
    assert batch.count("a0") == 1 and len(batch) == 4


def test_drop_camera_returns_its_items() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=1.0, camera_queue=16, total_queue=64)
    b.put("a", 1)
    b.put("b", 2)
    b.put("a", 3)
    assert b.drop_camera("a") == [1, 3]
    assert b.depth() == 1


def test_close_drains_then_returns_empty() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=60.0, camera_queue=16, total_queue=64)
    b.put("a", 1)
    got: list[list[int]] = []

    def consumer() -> None:
        got.append([q.item for q in b.take()])
        got.append([q.item for q in b.take()])

    th = threading.Thread(target=consumer)
    th.start()
    b.close()
    th.join(timeout=5)
    assert got == [[1], []]


def test_consumer_wakes_for_producer() -> None:
    b: Batcher[int] = Batcher(max_batch=2, max_wait_s=60.0, camera_queue=16, total_queue=64)
    out: list[int] = []
    th = threading.Thread(target=lambda: out.extend(q.item for q in b.take(timeout=10)))
    th.start()
    b.put("a", 1)
    b.put("b", 2)
    th.join(timeout=5)
    assert sorted(out) == [1, 2]


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError):
        Batcher(max_batch=0, max_wait_s=0.1, camera_queue=1, total_queue=1)
