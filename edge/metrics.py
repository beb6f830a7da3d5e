"""Prometheus metrics of one edge worker (own registry, so several workers fit in one test)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)


class EdgeMetrics:
    """Counters, gauges and the frame -> verdict latency histogram."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("linewatch_edge_frames", "Frames received", ["outcome"], registry=r)
        self.verdicts = Counter(
            "linewatch_edge_verdicts", "Verdicts published", ["verdict"], registry=r
        )
        self.latency = Histogram(
            "linewatch_edge_latency_seconds",
            "Frame received -> verdict published",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "linewatch_edge_batch_size",
            "Frames per inference batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.queue_depth = Gauge(
            "linewatch_edge_queue_depth", "Frames waiting for inference", registry=r
        )
        self.shed = Counter("linewatch_edge_shed_frames", "Frames shed under overload", registry=r)
        self.dead_letters = Counter(
            "linewatch_edge_dead_letters", "Inputs dead-lettered", ["reason"], registry=r
        )
        self.gaps = Counter(
            "linewatch_edge_gaps", "Gap records published (seqs)", ["reason"], registry=r
        )
        self.readings = Counter("linewatch_edge_readings", "Sensor readings forwarded", registry=r)
        self.sensor_anomalies = Counter(
            "linewatch_edge_sensor_anomalies", "Sensor anomalies", ["kind"], registry=r
        )
        self.publish_failures = Counter(
            "linewatch_edge_publish_failures",
            "Outputs the broker refused (input left unacked)",
            registry=r,
        )
        self.pending_acks = Gauge(
            "linewatch_edge_pending_acks",
            "Inputs waiting for their outputs' broker acks",
            registry=r,
        )
        self.capacity = Gauge(
            "linewatch_edge_capacity_fps", "Measured frames/s capacity", registry=r
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (``/metrics``); return the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and heartbeats)."""
        got = self.registry.get_sample_value(name, labels or None)
        return 0.0 if got is None else float(got)
