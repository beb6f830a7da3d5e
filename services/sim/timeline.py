"""The simulated line's pure core: topology, the tick schedule, and what each tick publishes."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from broker.topics import StreamRef
from services.sim.scenario import Effect, Scenario

SensorForm = Literal["bare", "json", "batch"]
FORMS: tuple[SensorForm, ...] = ("bare", "json", "batch")
# (quantity, unit, base value, noise std, period of the slow cycle in s)
QUANTITIES = (
    ("temperature", "C", 45.0, 0.4, 90.0),
    ("vibration", "mm_s", 2.0, 0.08, 40.0),
    ("pressure", "bar", 6.0, 0.04, 120.0),
    ("current", "A", 12.0, 0.15, 60.0),
)


@dataclass(frozen=True)
class LineSpec:
    """What the simulator runs: the topology, the rates and the seed."""

    site: str = "plant1"
    lines: int = 1
    stations: int = 2
    cameras: int = 1  # per station
    sensors: int = 4  # per station
    fps: float = 2.0  # per camera
    sensor_hz: float = 5.0  # per sensor
    defect_rate: float = 0.05
    seed: int = 0
    part_types: tuple[str, ...] = ("washer", "bracket", "pcb")
    families: tuple[str, ...] = ("scratch", "dent", "crack", "missing", "stain", "discoloration")
    pool: int = 12  # distinct renders per camera and label; 0 = every frame rendered anew
    sensor_form: SensorForm | Literal["mixed"] = "mixed"
    batch_n: int = 5  # readings per batch of a batch-form sensor
    epoch: int = 0  # publisher epoch of every input (a new one per run keeps runs' seqs apart)


@dataclass(frozen=True)
class Camera:
    index: int
    stream: StreamRef
    part_type: str
    offset: float  # time of frame 0 (cameras are staggered within one frame period)

    @property
    def where(self) -> str:
        return f"{self.stream.line}/{self.stream.station}/{self.stream.name}"


@dataclass(frozen=True)
class Sensor:
    index: int
    stream: StreamRef
    quantity: str
    unit: str
    base: float
    std: float
    period: float
    phase: float
    form: SensorForm
    offset: float

    @property
    def where(self) -> str:
        return f"{self.stream.line}/{self.stream.station}/{self.stream.name}"


def topology(spec: LineSpec) -> tuple[list[Camera], list[Sensor]]:
    """Cameras ``lineL/stS/camC`` (one part type each, round robin) and sensors ``sK``."""
    cams: list[Camera] = []
    sensors: list[Sensor] = []
    for line in range(1, spec.lines + 1):
        for st in range(1, spec.stations + 1):
            for c in range(1, spec.cameras + 1):
                i = len(cams)
                ref = StreamRef.camera(spec.site, f"line{line}", f"st{st}", f"cam{c}")
                part = spec.part_types[i % len(spec.part_types)]
                cams.append(Camera(i, ref, part, _stagger(spec.seed, 1, i) / spec.fps))
            for k in range(1, spec.sensors + 1):
                i = len(sensors)
                q, unit, base, std, period = QUANTITIES[(k - 1) % len(QUANTITIES)]
                ref = StreamRef.sensor(spec.site, f"line{line}", f"st{st}", f"s{k}")
                form = FORMS[(k - 1) % 3] if spec.sensor_form == "mixed" else spec.sensor_form
                phase = _stagger(spec.seed, 3, i) * 2 * math.pi
                offset = _stagger(spec.seed, 2, i) / spec.sensor_hz
                sensors.append(Sensor(i, ref, q, unit, base, std, period, phase, form, offset))
    return cams, sensors


def _stagger(seed: int, salt: int, index: int) -> float:
    return float(np.random.default_rng((seed, salt, index, 0)).random())


@dataclass(frozen=True, order=True)
class Tick:
    """One scheduled publish: frame ``seq`` of camera ``index``, or reading ``seq`` of a sensor."""

    t: float
    kind: Literal["frame", "sensor"]
    index: int
    seq: int


def schedule(
    spec: LineSpec, cams: Sequence[Camera], sensors: Sequence[Sensor], until: float = math.inf
) -> Iterator[Tick]:
    """Every tick before ``until`` (seconds since the start), in time order."""
    heap: list[Tick] = [Tick(c.offset, "frame", c.index, 0) for c in cams]
    heap += [Tick(s.offset, "sensor", s.index, 0) for s in sensors]
    heapq.heapify(heap)
    while heap and heap[0].t < until:
        tick = heapq.heappop(heap)
        yield tick
        seq = tick.seq + 1
        if tick.kind == "frame":
            nxt = cams[tick.index].offset + seq / spec.fps
        else:
            nxt = sensors[tick.index].offset + seq / spec.sensor_hz
        heapq.heappush(heap, Tick(nxt, tick.kind, tick.index, seq))


@dataclass(frozen=True)
class Frame:
    """What a camera shows at one tick (the ground truth of that frame)."""

    seq: int
    t: float
    defect: str | None
    slot: int  # which render of (camera, label): frames with one slot show one image
    gain: float  # lighting multiplier applied after rendering
    effects: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.defect or "good"


def _hitting(effects: Sequence[Effect], where: str, t: float) -> list[Effect]:
    return [e for e in effects if e.active(t) and e.hits(where)]


def frame_at(spec: LineSpec, scenario: Scenario, cam: Camera, seq: int, t: float) -> Frame | None:
    """The frame camera ``cam`` publishes at tick ``seq`` (None while it is silent)."""
    effects = scenario.camera_effects()
    now = _hitting(effects, cam.where, t)
    if any(e.kind == "camera_silent" for e in now):
        return None
    rng = np.random.default_rng((spec.seed, 1, cam.index, seq))
    u_defect, u_new, u_family, u_slot = rng.random(4)
    rate = max([spec.defect_rate] + [e.rate or 0.5 for e in now if e.kind == "defect_burst"])
    new = [e for e in now if e.kind == "new_family"]
    usual = [f for f in spec.families if f not in scenario.held_back()]
    defect: str | None = None
    if u_defect < rate:
        if new and (u_new < (new[0].share or 0.5) or not usual):
            defect = new[0].family or "crack"
        elif usual:
            defect = usual[int(u_family * len(usual))]
    gain = 1.0
    for e in effects:  # a drift holds its last gain after it ends
        if e.kind == "lighting_drift" and e.hits(cam.where) and t >= e.start:
            gain *= 1.0 + ((e.gain or 0.6) - 1.0) * e.progress(t)
    slot = int(u_slot * spec.pool) if spec.pool else seq
    names = tuple(sorted({e.kind for e in now} | ({"lighting_drift"} if gain != 1.0 else set())))
    return Frame(seq, t, defect, slot, round(gain, 4), names)


@dataclass(frozen=True)
class Reading:
    """One sensor reading and the effects that shaped it (the ground truth of that reading)."""

    seq: int
    t: float
    value: float
    effects: tuple[str, ...]


def _clean_value(spec: LineSpec, s: Sensor, seq: int) -> float:
    t = s.offset + seq / spec.sensor_hz
    noise = np.random.default_rng((spec.seed, 2, s.index, seq)).standard_normal()
    cycle = 2.0 * s.std * math.sin(2 * math.pi * t / s.period + s.phase)
    return s.base + cycle + s.std * float(noise)


def reading_at(spec: LineSpec, scenario: Scenario, s: Sensor, seq: int) -> Reading:
    """Reading ``seq`` of sensor ``s`` (taken at ``offset + seq / sensor_hz``)."""
    t = s.offset + seq / spec.sensor_hz
    value = _clean_value(spec, s, seq)
    names: set[str] = set()
    for e in scenario.sensor_effects():
        if not e.hits(s.where) or t < e.start:
            continue
        if e.kind == "sensor_drift":  # the offset stays where it got to when the drift ends
            value += (e.rate or 0.3) * s.std * (min(t, e.end or t) - e.start)
            names.add(e.kind)
        elif e.kind == "sensor_spike" and e.active(t):
            value += (e.magnitude or 15.0) * s.std
            names.add(e.kind)
        elif e.kind == "stuck_value" and e.active(t):
            first = max(0, math.ceil((e.start - s.offset) * spec.sensor_hz - 1e-9))
            value = _clean_value(spec, s, first)
            names.add(e.kind)
    return Reading(seq, t, round(value, 5), tuple(sorted(names)))
