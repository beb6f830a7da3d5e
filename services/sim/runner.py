"""The simulator's shell: paces the schedule in real time, publishes, records the ground truth."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from broker import topics
from broker.transport import Published, Transport
from services.sim.scenario import Scenario
from services.sim.timeline import Camera, LineSpec, Reading, Sensor, Tick, frame_at, reading_at
from services.sim.timeline import schedule as make_schedule
from services.sim.timeline import topology as make_topology
from services.sim.wire import FrameSource, frame_message, part_id, rfc3339, sensor_message

log = logging.getLogger("linewatch.sim")
ACK_WAIT_S = 10.0  # at the end, how long to wait for the broker to acknowledge the rest


@dataclass
class Counts:
    frames: int = 0
    defects: int = 0
    readings: int = 0
    messages: int = 0
    acked: int = 0
    unacked: int = 0
    max_lag_s: float = 0.0
    by_defect: dict[str, int] = field(default_factory=dict)


class Truth:
    """Ground-truth JSON lines, each written once the broker acknowledged its publish."""

    def __init__(self, out: TextIO | None, max_pending: int) -> None:
        self._out = out
        self.stop = threading.Event()  # set: stop waiting for the broker (finish() settles)
        self._pending: deque[tuple[Published, list[dict[str, Any]]]] = deque()
        self._max_pending = max_pending

    def note(self, record: dict[str, Any]) -> None:
        """A record that is not a publish (the run header, a camera falling silent)."""
        if self._out is not None:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def add(self, handle: Published, records: list[dict[str, Any]], counts: Counts) -> None:
        self._pending.append((handle, records))
        self.pump(counts)
        while len(self._pending) > self._max_pending and not self.stop.is_set():
            # bounded: wait for the broker (while it is away, until a stop request)
            self._settle(self._pending[0][0].wait(1.0), counts)

    def pump(self, counts: Counts) -> None:
        while self._pending and self._pending[0][0].done:
            self._settle(True, counts)

    def finish(self, counts: Counts, timeout: float = ACK_WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while self._pending:
            left = max(0.0, deadline - time.monotonic())
            self._settle(self._pending[0][0].wait(left), counts, final=True)

    def _settle(self, done: bool, counts: Counts, final: bool = False) -> None:
        if not done and not final:
            return
        _, records = self._pending.popleft()
        counts.acked += done
        counts.unacked += not done
        for r in records:
            self.note({**r, "acked": done})


class Simulator:
    """Publishes the line of ``spec`` under ``scenario`` through ``transport`` in real time."""

    def __init__(
        self,
        spec: LineSpec,
        scenario: Scenario,
        transport: Transport,
        frames: FrameSource,
        *,
        envelope: bool,
        v5: bool,
        truth: TextIO | None = None,
        progress_s: float = 5.0,
        say: Callable[[str], None] = print,
        max_pending: int = 500,
    ) -> None:
        self.spec, self.scenario, self.bus, self.frames = spec, scenario, transport, frames
        self.envelope, self.v5 = envelope, v5
        self.cameras, self.sensors = make_topology(spec)
        self.truth = Truth(truth, max_pending)
        self.counts = Counts()
        self.progress_s, self.say = progress_s, say
        self._batches: dict[int, list[tuple[Reading, float]]] = {}
        self._silent: set[int] = set()
        self._skips: dict[int, int] = {}
        self._t0 = 0.0

    def header(self) -> dict[str, Any]:
        return {
            "kind": "run",
            "started": rfc3339(self._t0),
            "spec": asdict(self.spec),
            "scenario": self.scenario.model_dump(mode="json"),
            "envelope": self.envelope,
            "tier_applied": self.frames.tier_applied,
            "cameras": [{"stream": c.stream.key, "part_type": c.part_type} for c in self.cameras],
            "sensors": [
                {"stream": s.stream.key, "quantity": s.quantity, "unit": s.unit, "form": s.form}
                for s in self.sensors
            ],
        }

    def run(self, duration: float | None, stop: threading.Event) -> Counts:
        """Publish until ``duration`` seconds have passed or ``stop`` is set."""
        self.truth.stop = stop
        self._t0 = time.time()
        start = time.monotonic()
        self.truth.note(self.header())
        next_report = self.progress_s
        until = float("inf") if duration is None else duration
        for tick in make_schedule(self.spec, self.cameras, self.sensors, until):
            delay = tick.t - (time.monotonic() - start)
            if delay > 0 and stop.wait(delay):
                break
            if stop.is_set():
                break
            self.counts.max_lag_s = max(self.counts.max_lag_s, -delay)
            self._tick(tick)
            if self.progress_s and tick.t >= next_report:
                next_report += self.progress_s
                self.truth.pump(self.counts)
                self.say(self.progress_line(time.monotonic() - start))
        for index in list(self._batches):
            self._flush_batch(self.sensors[index])
        self.truth.finish(self.counts)
        elapsed = time.monotonic() - start
        self.say(self.progress_line(elapsed, final=True))
        self.truth.note({"kind": "end", "elapsed_s": round(elapsed, 3), **asdict(self.counts)})
        return self.counts

    def progress_line(self, elapsed: float, final: bool = False) -> str:
        c, e = self.counts, max(elapsed, 1e-9)
        target = self.spec.fps * len(self.cameras)
        return (
            f"sim {'done ' if final else ''}{elapsed:.1f}s: frames {c.frames} "
            f"({c.frames / e:.1f}/s, target {target:.1f}/s), defects {c.defects}, "
            f"readings {c.readings} ({c.readings / e:.0f}/s), acked {c.acked}, "
            f"unacked {c.unacked}, renders {self.frames.renders}, max lag {c.max_lag_s:.2f}s"
        )

    def _tick(self, tick: Tick) -> None:
        if tick.kind == "frame":
            self._frame(self.cameras[tick.index], tick)
        else:
            self._reading(self.sensors[tick.index], tick.seq)

    def _frame(self, cam: Camera, tick: Tick) -> None:
        # the camera's counter counts frames it took: silent ticks do not advance it
        seq = tick.seq - self._skips.get(cam.index, 0)
        frame = frame_at(self.spec, self.scenario, cam, seq, tick.t)
        if frame is None:
            self._skips[cam.index] = self._skips.get(cam.index, 0) + 1
            if cam.index not in self._silent:
                self._silent.add(cam.index)
                self.truth.note({"kind": "silent", "stream": cam.stream.key, "t": tick.t})
            return
        if cam.index in self._silent:
            self._silent.discard(cam.index)
            self.truth.note({"kind": "resumed", "stream": cam.stream.key, "t": tick.t})
        ts = self._t0 + tick.t
        part = part_id(cam, frame.seq)
        image = self.frames.jpeg(cam, frame)
        payload, props = frame_message(
            image, frame.seq, ts, part, envelope=self.envelope, epoch=self.spec.epoch
        )
        handle = self.bus.publish(topics.frame_topic(cam.stream), payload, properties=props)
        record = {
            "kind": "frame",
            "stream": cam.stream.key,
            "seq": frame.seq,
            "t": round(tick.t, 4),
            "ts": rfc3339(ts),
            "part": part,
            "part_type": cam.part_type,
            "defect": frame.defect,
            "gain": frame.gain,
            "slot": frame.slot,
            "render_seed": list(self.frames.render_seed(cam, frame)),
            "effects": list(frame.effects),
            "bytes": len(image),
        }
        self.counts.frames += 1
        self.counts.messages += 1
        if frame.defect:
            self.counts.defects += 1
            self.counts.by_defect[frame.defect] = self.counts.by_defect.get(frame.defect, 0) + 1
        self.truth.add(handle, [record], self.counts)

    def _reading(self, sensor: Sensor, seq: int) -> None:
        reading = reading_at(self.spec, self.scenario, sensor, seq)
        batch = self._batches.setdefault(sensor.index, [])
        batch.append((reading, self._t0 + reading.t))
        self.counts.readings += 1
        if sensor.form != "batch" or len(batch) >= self.spec.batch_n:
            self._flush_batch(sensor)

    def _flush_batch(self, sensor: Sensor) -> None:
        batch = self._batches.pop(sensor.index, [])
        if not batch:
            return
        payload, props = sensor_message(sensor, batch, v5=self.v5, epoch=self.spec.epoch)
        handle = self.bus.publish(topics.sensor_topic(sensor.stream), payload, properties=props)
        keyed = sensor.form != "bare" or self.v5
        records = [
            {
                "kind": "reading",
                "stream": sensor.stream.key,
                "seq": r.seq if keyed else None,
                "n": r.seq,
                "t": round(r.t, 4),
                "ts": rfc3339(ts),
                "value": r.value,
                "unit": sensor.unit,
                "form": sensor.form,
                "effects": list(r.effects),
            }
            for r, ts in batch
        ]
        self.counts.messages += 1
        self.truth.add(handle, records, self.counts)
