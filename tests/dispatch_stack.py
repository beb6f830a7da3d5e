"""The dispatcher fault tests' site: store, three edge workers, dispatcher(s) and a camera
publisher as real processes, plus a test-side observer of statuses, assignments and verdicts.
A worker's broker link may go through a fault proxy (``Stack.edge_urls``)."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from edge_stack import Proc, linewatch
from helpers import wait_for
from history import History, PublisherLog, report, sqlite_rows, wait_accounted

from broker.codecs import decode_output
from broker.messages import Assignment, DispatchDecision, Verdict, WorkerStatus
from broker.mqtt import MqttTransport
from broker.topics import (
    ALL_ASSIGNMENTS,
    ALL_STATUS,
    DISPATCH_DECISIONS,
    StreamRef,
    frame_topic,
)
from broker.transport import Inbound

KEEPALIVE = 2
MOVE_GAPS = {"failover", "missing", "shed"}
FPS = 5.0


def frames(model: Path, n: int = 12) -> list[bytes]:
    """JPEG frames of the synthetic production line at the model's input size."""
    from edge.model.card import load_card
    from edge.model.synthetic import iter_samples

    size = load_card(model).input.size
    out = []
    for sample in iter_samples(7, n, size=size, defect_fraction=0.2):
        buf = io.BytesIO()
        sample.image.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class Fleet:
    """Test-side view of one site: statuses, assignments, decisions, verdicts (MQTT)."""

    def __init__(self, url: str, site: str) -> None:
        self.site = site
        self.t = MqttTransport(url, f"watch-{site}", clean_start=True)
        self.status: dict[str, WorkerStatus] = {}
        self.assign: dict[str, Assignment] = {}
        self.decisions: list[tuple[float, DispatchDecision]] = []
        self.verdicts: list[tuple[float, Verdict]] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> Fleet:
        self.t.subscribe(ALL_STATUS, self._on)
        self.t.subscribe(ALL_ASSIGNMENTS, self._on)
        self.t.subscribe(DISPATCH_DECISIONS, self._on)
        self.t.subscribe(f"lw/v1/{self.site}/+/+/camera/+/verdict", self._on)
        self.t.start()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _on(self, m: Inbound) -> None:
        msg = decode_output(m.topic, m.payload)
        now = time.monotonic()
        with self._lock:
            if isinstance(msg, WorkerStatus) and msg.worker.startswith(self.site):
                self.status[msg.worker] = msg
            elif isinstance(msg, Assignment) and msg.worker.startswith(self.site):
                self.assign[msg.worker] = msg
            elif isinstance(msg, DispatchDecision) and msg.dispatcher.startswith(self.site):
                self.decisions.append((now, msg))
            elif isinstance(msg, Verdict):
                self.verdicts.append((now, msg))
        m.ack()

    def _sample(self) -> None:
        """Every 100 ms: no stream claimed by two live workers that follow their latest
        assignment (a worker behind its assignment's epoch is being fenced, not owning)."""
        while not self._stop.wait(0.1):
            with self._lock:
                seen: dict[str, str] = {}
                for w, st in self.status.items():
                    a = self.assign.get(w)
                    if st.state == "offline" or a is None or st.epoch < a.epoch:
                        continue
                    for s in st.streams:
                        if s in seen:
                            self.violations.append(f"{s} on {seen[s]} and {w}")
                        seen[s] = w

    def owner(self) -> dict[str, str]:
        with self._lock:
            return {s: w for w, a in self.assign.items() for s in a.streams}

    def served_after(self, stream: str, t: float, exclude: str) -> float | None:
        with self._lock:
            for when, v in self.verdicts:
                if when > t and v.stream == stream and v.worker != exclude:
                    return when
        return None

    def stop(self) -> None:
        self._stop.set()
        self.t.stop()


class Stack:
    """Store + three edge workers + dispatcher(s) of one site, all real processes."""

    def __init__(self, url: str, model: Path, tmp: Path) -> None:
        self.site = f"t{uuid.uuid4().hex[:10]}"
        self.db, self.tmp, self.model = tmp / "history.db", tmp, model
        self.cams = [StreamRef.camera(self.site, "L1", "st1", f"c{i}") for i in range(3)]
        self.env = {
            "LINEWATCH_MQTT_URL": url,
            "LINEWATCH_DB_URL": f"sqlite:///{self.db}",
            "LINEWATCH_DATA_DIR": str(tmp),
            "LINEWATCH_STORE_NAME": self.site,
            "LINEWATCH_STORE_SITE": self.site,
            "LINEWATCH_KEEPALIVE_S": str(KEEPALIVE),
        }
        self.dispatch_env = {
            **self.env,
            "LINEWATCH_WORKER_PREFIX": self.site,
            "LINEWATCH_REBALANCE_S": "0",
            "LINEWATCH_OBSERVE_RATES": "false",
            "LINEWATCH_DEFAULT_CAPACITY_FPS": "40",
            "LINEWATCH_STREAMS": json.dumps([{"id": c.key, "fps": FPS} for c in self.cams]),
            # discovery stays on (it holds a dead worker's inputs for the new owner) but only
            # for this site: the broker may carry other tests' cameras
            "LINEWATCH_DISCOVER_TOPICS": json.dumps([f"lw/v1/{self.site}/+/+/camera/+/frame"]),
        }
        self.procs: dict[str, Proc] = {}
        self.fleet = Fleet(url, self.site)
        self.edge_urls: dict[str, str] = {}  # worker index -> broker URL (e.g. a fault proxy)
        self.dispatch_urls: dict[str, str] = {}  # dispatcher id -> broker URL

    def start(self, dispatchers: int = 1) -> Stack:
        linewatch("db", "upgrade", env=self.env)
        self.fleet.start()
        self.procs["store"] = Proc("store", ["store"], self.env, self.tmp).start()
        for i, cost in enumerate((1.0, 1.2, 1.5)):
            self.start_edge(f"{self.site}E{i}", cost, self.edge_urls.get(str(i)))
        for i in range(dispatchers):
            self.start_dispatcher(f"{self.site}D{i}")
        wait_for(
            lambda: len(self.fleet.owner()) == len(self.cams),
            120,
            0.1,
            what="every camera assigned",
        )
        return self

    def start_edge(self, wid: str, cost: float, mqtt_url: str | None = None) -> None:
        env = {**self.env, "LINEWATCH_COST_PER_HOUR": str(cost)}
        if mqtt_url:
            env["LINEWATCH_MQTT_URL"] = mqtt_url
        self.procs[wid] = Proc(
            wid, ["edge", "--id", wid, "--model-dir", str(self.model)], env, self.tmp
        ).start()

    def start_dispatcher(self, did: str) -> None:
        env = dict(self.dispatch_env)
        if did in self.dispatch_urls:
            env["LINEWATCH_MQTT_URL"] = self.dispatch_urls[did]
        self.procs[did] = Proc(did, ["dispatch", "run", "--id", did], env, self.tmp).start()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.alive() and p.p is not None:
                os.kill(p.pid, signal.SIGCONT)
            p.stop()
        self.fleet.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail(2500)}" for n, p in self.procs.items())


class Camera(threading.Thread):
    """Publishes every camera's frames at FPS with sequence numbers until stopped."""

    def __init__(self, stack: Stack, images: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.stack, self.images = stack, images
        self.t = MqttTransport(
            stack.env["LINEWATCH_MQTT_URL"], f"cam-{stack.site}", clean_start=True
        )
        self.log = PublisherLog()
        self.halt = threading.Event()

    def run(self) -> None:
        self.t.start()
        seq = 0
        while not self.halt.is_set():
            for c in self.stack.cams:
                self.t.publish(
                    frame_topic(c),
                    self.images[seq % len(self.images)],
                    properties={"seq": str(seq)},
                ).wait(10)
                self.log.record(c.key, seq)
            seq += 1
            self.halt.wait(1.0 / FPS)  # pacing the publisher, not waiting on state
        self.t.stop()


def serving(stack: Stack, t: float) -> bool:
    owner = stack.fleet.owner()
    return all(stack.fleet.served_after(c.key, t, exclude="") for c in stack.cams) and len(
        owner
    ) == len(stack.cams)


def history(stack: Stack, cam: Camera) -> list[History]:
    """Every camera's frames stored once or gapped (tests/history.py); the pass rule of a
    moved stream: docs/operations.md, "Faults" (failover, missing and shed gaps allowed)."""
    out = wait_accounted(cam.log, sqlite_rows(stack.db), 120, allowed_gaps=MOVE_GAPS)
    print(report(out))
    return out


def busiest(stack: Stack) -> tuple[str, list[str]]:
    owner = stack.fleet.owner()
    counts: dict[str, int] = {}
    for w in owner.values():
        counts[w] = counts.get(w, 0) + 1
    victim = max(sorted(counts), key=lambda w: counts[w])
    return victim, [s for s, w in owner.items() if w == victim]
