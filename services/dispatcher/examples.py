"""Reference instances: the documented four-server / ten-task example and seeded random ones."""

from __future__ import annotations

import random
from typing import Any

from services.dispatcher.model import Instance, StreamInfo, WorkerInfo

# Four servers with different performance (frames/s they sustain) and cost per hour, and ten
# tasks (camera streams) with their demand in frames/s. t1-t3 must run on site A, t4-t5 need a
# GPU. At 80 % target utilisation the optimum is s1 + s2 + s4 at 4.8 $/h: the cheaper pair
# s2 + s4 (3.8 $/h) is 10 frames/s short, and every other choice is dearer or breaks a label
# (docs/dispatcher.md walks through it).
FOUR_BY_TEN: dict[str, Any] = {
    "workers": [
        {"id": "s1", "capacity_fps": 120, "cost_per_hour": 1.0, "labels": {"site": "A"}},
        {"id": "s2", "capacity_fps": 200, "cost_per_hour": 1.6, "labels": {"site": "A"}},
        {
            "id": "s3",
            "capacity_fps": 500,
            "cost_per_hour": 4.0,
            "labels": {"site": "B", "gpu": "true"},
        },
        {
            "id": "s4",
            "capacity_fps": 300,
            "cost_per_hour": 2.2,
            "labels": {"site": "B", "gpu": "true"},
        },
    ],
    "streams": [
        {"id": "t1", "fps": 40, "requires": {"site": "A"}},
        {"id": "t2", "fps": 35, "requires": {"site": "A"}},
        {"id": "t3", "fps": 30, "requires": {"site": "A"}},
        {"id": "t4", "fps": 70, "requires": {"gpu": "true"}},
        {"id": "t5", "fps": 60, "requires": {"gpu": "true"}},
        {"id": "t6", "fps": 45},
        {"id": "t7", "fps": 40},
        {"id": "t8", "fps": 35},
        {"id": "t9", "fps": 30},
        {"id": "t10", "fps": 25},
    ],
}
FOUR_BY_TEN_OPTIMUM = 4.8


def random_instance(
    seed: int, n_streams: int, n_workers: int, *, load: float = 0.65, label_share: float = 0.25
) -> Instance:
    """A seeded instance: heterogeneous workers (cost roughly ~ capacity, with noise), streams
    of 2-15 frames/s, some requiring ``site`` or ``gpu`` labels; total demand is about
    ``load`` of the total target capacity."""
    rng = random.Random(seed)
    workers = []
    for i in range(n_workers):
        gpu = rng.random() < 0.3
        cap = rng.uniform(150, 400) if gpu else rng.uniform(60, 200)
        cost = cap / 100.0 * rng.uniform(0.7, 1.3) * (1.2 if gpu else 1.0)
        labels = {"site": "A" if i % 2 == 0 else "B"}
        if gpu:
            labels["gpu"] = "true"
        workers.append(WorkerInfo(f"w{i:02d}", round(cap, 1), round(cost, 3), labels))
    target_cap = sum(w.capacity_fps for w in workers) * 0.8
    raw = [rng.uniform(2, 15) for _ in range(n_streams)]
    scale = load * target_cap / max(sum(raw), 1e-9)
    streams = []
    for j, f in enumerate(raw):
        requires: dict[str, str] = {}
        r = rng.random()
        if r < label_share * 0.7:
            requires["site"] = rng.choice(["A", "B"])
        elif r < label_share:
            requires["gpu"] = "true"
        streams.append(
            StreamInfo(
                f"s{j:03d}", round(min(f * scale, 40.0), 2), requires, priority=rng.randint(0, 2)
            )
        )
    return Instance(tuple(workers), tuple(streams))
