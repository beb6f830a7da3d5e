"""Prometheus endpoint of the edge worker (served on 127.0.0.1, an ephemeral port)."""

from __future__ import annotations

import urllib.request

import pytest

from edge.metrics import EdgeMetrics

pytestmark = pytest.mark.unit


def test_metrics_endpoint_serves_the_worker_figures() -> None:
    m = EdgeMetrics("W1")
    m.frames.labels("received").inc(3)
    m.verdicts.labels("defect").inc()
    m.latency.observe(0.012)
    m.shed.inc(2)
    m.dead_letters.labels("bad_image").inc()
    m.queue_depth.set(5)
    port = m.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        m.close()
    for line in (
        'linewatch_edge_frames_total{outcome="received"} 3.0',
        'linewatch_edge_verdicts_total{verdict="defect"} 1.0',
        "linewatch_edge_shed_frames_total 2.0",
        'linewatch_edge_dead_letters_total{reason="bad_image"} 1.0',
        "linewatch_edge_queue_depth 5.0",
        "linewatch_edge_latency_seconds_count 1.0",
    ):
        assert line in text
    assert m.value("linewatch_edge_shed_frames_total") == 2.0
