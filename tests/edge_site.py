"""One site of real processes for the edge fault tests: SQLite history, store, edge worker(s)
(same id, restartable), a watcher/publisher; the worker's broker link may go through a proxy."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

from edge_stack import Proc, Watcher, linewatch
from helpers import wait_for

from broker.topics import StreamRef


class Site:
    """DB, store and an edge worker that a test may kill, restart or cut off.

    ``edge_mqtt_url``: where the worker connects (e.g. a fault proxy in front of ``url``);
    the store and the test's own client always use ``url``."""

    def __init__(
        self,
        url: str,
        model: Path,
        tmp: Path,
        cameras: list[str],
        edge_mqtt_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.url, self.model, self.tmp = url, model, tmp
        self.site = f"t{uuid.uuid4().hex[:10]}"
        self.worker = f"K{self.site}"
        self.db = tmp / "history.db"
        self.env = {
            "LINEWATCH_MQTT_URL": url,
            "LINEWATCH_DB_URL": f"sqlite:///{self.db}",
            "LINEWATCH_DATA_DIR": str(tmp),
            "LINEWATCH_STORE_NAME": self.site,
            "LINEWATCH_STORE_SITE": self.site,
            "LINEWATCH_KEEPALIVE_S": "2",
            "LINEWATCH_CAMERA_QUEUE": "64",
            **(extra_env or {}),
        }
        self.edge_env = {**self.env, "LINEWATCH_MQTT_URL": edge_mqtt_url or url}
        self.cams = [StreamRef.camera(self.site, "L1", "st1", c) for c in cameras]
        self.edges: list[Proc] = []

    def start(self) -> Site:
        linewatch("db", "upgrade", env=self.env)
        self.store = Proc("store", ["store"], self.env, self.tmp).start()
        self.watcher = Watcher(self.url, f"w-{self.site}").start(
            [self.worker, f"store-{self.site}"]
        )
        self.start_edge()
        self.watcher.wait_online(f"store-{self.site}")
        return self

    def start_edge(self, counter_above: int = 0, wait: bool = True) -> Any:
        streams = ",".join(c.key for c in self.cams)
        edge = Proc(
            f"edge{len(self.edges)}",
            ["edge", "--id", self.worker, "--streams", streams, "--model-dir", str(self.model)],
            self.edge_env,
            self.tmp,
        ).start()
        self.edges.append(edge)
        return self.watcher.wait_online(self.worker, counter_above=counter_above) if wait else None

    def capacity(self) -> float:
        """The worker's measured frames/s, from its heartbeats."""

        def capacity() -> float:
            beat = self.watcher.last(self.worker)
            return float(beat.capacity_fps) if beat is not None else 0.0

        return wait_for(capacity, 30, 0.1, what="a heartbeat with the capacity")

    def stop(self) -> None:
        self.watcher.stop()
        for e in self.edges:
            e.stop()
        self.store.stop()

    def logs(self) -> str:
        return "\n".join(p.tail(3000) for p in [*self.edges, self.store])


def camera_frames(model: Path, n: int = 24, seed: int = 99) -> list[bytes]:
    """JPEG frames of the synthetic line at the model's input size."""
    from edge.model.card import load_card
    from edge.model.synthetic import iter_samples

    size = load_card(model).input.size
    out = []
    for s in iter_samples(seed, n, size=size, defect_fraction=0.3):
        buf = io.BytesIO()
        s.image.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out
