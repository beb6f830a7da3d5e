"""The simulator's pure core: scenarios, schedule, frame and reading decisions, wire forms."""

from __future__ import annotations

import base64
import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from broker.codecs import decode_input
from broker.messages import FrameIn, SensorIn
from broker.topics import frame_topic, sensor_topic
from services.sim.scenario import BUILTIN, Effect, Scenario, ScenarioError, combine, load
from services.sim.timeline import (
    Frame,
    LineSpec,
    Reading,
    frame_at,
    reading_at,
    schedule,
    topology,
)
from services.sim.wire import FrameSource, frame_message, part_id, sensor_message, takes_tier

pytestmark = pytest.mark.unit

SPEC = LineSpec(lines=2, stations=2, cameras=1, sensors=3, fps=5, sensor_hz=10, seed=7)
NONE = Scenario()
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_topology_names_streams_and_gives_each_camera_one_part_type() -> None:
    cams, sensors = topology(SPEC)
    assert [c.where for c in cams] == [
        "line1/st1/cam1",
        "line1/st2/cam1",
        "line2/st1/cam1",
        "line2/st2/cam1",
    ]
    assert [c.part_type for c in cams] == ["washer", "bracket", "pcb", "washer"]
    assert len(sensors) == 12 and sensors[0].stream.key == "plant1/line1/st1/sensor/s1"
    assert [s.form for s in sensors[:3]] == ["bare", "json", "batch"]
    assert all(0 <= c.offset < 1 / SPEC.fps for c in cams)


def test_schedule_is_time_ordered_and_holds_the_rates() -> None:
    cams, sensors = topology(SPEC)
    ticks = list(schedule(SPEC, cams, sensors, until=10.0))
    assert [t.t for t in ticks] == sorted(t.t for t in ticks)
    frames = [t for t in ticks if t.kind == "frame"]
    readings = [t for t in ticks if t.kind == "sensor"]
    assert len(frames) == 4 * 5 * 10
    assert len(readings) == 12 * 10 * 10
    per_cam = [t.seq for t in frames if t.index == 2]
    assert per_cam == list(range(50))


def test_frames_are_deterministic_by_seed_and_follow_the_defect_rate() -> None:
    cams, _ = topology(SPEC)
    spec = LineSpec(**{**SPEC.__dict__, "defect_rate": 0.2})
    a = [frame_at(spec, NONE, cams[0], i, i / 5) for i in range(2000)]
    b = [frame_at(spec, NONE, cams[0], i, i / 5) for i in range(2000)]
    assert a == b
    other = LineSpec(**{**spec.__dict__, "seed": 8})
    assert [f.defect for f in a if f] != [
        f.defect for f in (frame_at(other, NONE, cams[0], i, i / 5) for i in range(2000)) if f
    ]
    defects = [f.defect for f in a if f and f.defect]
    assert 0.17 < len(defects) / 2000 < 0.23
    assert set(defects) == set(spec.families)
    assert all(f is not None and 0 <= f.slot < spec.pool for f in a)


def test_defect_burst_raises_the_rate_only_on_its_target_and_window() -> None:
    cams, _ = topology(SPEC)
    burst = Scenario(
        effects=(Effect(kind="defect_burst", start=10, end=20, rate=0.9, target="line1/st1/*"),)
    )

    def rate(cam: int, t0: float) -> float:
        frames = [frame_at(SPEC, burst, cams[cam], i, t0 + i * 0.001) for i in range(400)]
        return sum(1 for f in frames if f and f.defect) / 400

    assert rate(0, 10.0) > 0.8
    assert rate(0, 0.0) < 0.15 and rate(0, 20.0) < 0.15
    assert rate(1, 10.0) < 0.15
    f = frame_at(SPEC, burst, cams[0], 3, 12.0)
    assert f is not None and f.effects == ("defect_burst",)


def test_new_family_is_absent_before_it_appears_and_common_after() -> None:
    cams, _ = topology(SPEC)
    spec = LineSpec(**{**SPEC.__dict__, "defect_rate": 0.5})
    scen = load("new-family")
    start = scen.effects[0].start
    before = [frame_at(spec, scen, cams[1], i, start - 1) for i in range(1000)]
    after = [frame_at(spec, scen, cams[1], i, start + 1) for i in range(1000)]
    assert not any(f and f.defect == "crack" for f in before)
    assert sum(1 for f in before if f and f.defect) > 400  # the other families still come
    assert sum(1 for f in after if f and f.defect == "crack") > 150


def test_lighting_drift_ramps_and_holds_and_silence_skips_frames() -> None:
    cams, _ = topology(SPEC)
    scen = combine([load("lighting-drift"), load("camera-silent")])
    gains = [frame_at(SPEC, scen, cams[0], 0, t) for t in (0.0, 10.0, 30.0, 50.0, 80.0)]
    assert [f.gain for f in gains if f] == [1.0, 1.0, 0.8, 0.6, 0.6]
    assert frame_at(SPEC, scen, cams[1], 0, 19.9) is not None
    assert frame_at(SPEC, scen, cams[1], 0, 35.0) is not None
    assert frame_at(SPEC, scen, cams[1], 0, 25.0) is None  # line1/st2/cam1 falls silent
    assert frame_at(SPEC, scen, cams[3], 0, 25.0) is not None  # line2/st2/cam1 keeps going


def _values(scen: Scenario, sensor: int, n: int) -> list[Reading]:
    _, sensors = topology(SPEC)
    return [reading_at(SPEC, scen, sensors[sensor], i) for i in range(n)]


def test_sensor_effects_spike_drift_and_stuck() -> None:
    scen = Scenario(
        effects=(
            Effect(kind="sensor_spike", start=2, end=3, magnitude=20, target="line1/st1/s1"),
            Effect(kind="sensor_drift", start=2, end=4, rate=1.0, target="line1/st1/s2"),
            Effect(kind="stuck_value", start=2, end=4, target="line1/st1/s3"),
        )
    )
    _, sensors = topology(SPEC)
    clean = [_values(NONE, i, 60) for i in range(3)]
    fx = [_values(scen, i, 60) for i in range(3)]
    std = sensors[0].std
    spiked = [r for r, c in zip(fx[0], clean[0], strict=True) if r.value != c.value]
    assert spiked and all(2 <= r.t < 3 and r.effects == ("sensor_spike",) for r in spiked)
    assert all(
        abs(r.value - c.value - 20 * std) < 1e-3
        for r, c in zip(fx[0], clean[0], strict=True)
        if r.effects
    )
    drift = [r.value - c.value for r, c in zip(fx[1], clean[1], strict=True)]
    assert drift[0] == 0 and drift[-1] == pytest.approx(2 * sensors[1].std, abs=1e-3)
    stuck = [r.value for r in fx[2] if r.effects == ("stuck_value",)]
    assert len(stuck) == 20 and len(set(stuck)) == 1
    assert _values(scen, 0, 60) == fx[0]  # deterministic


def test_builtin_scenarios_load_and_toml_files_are_checked(tmp_path: Path) -> None:
    for name in BUILTIN:
        assert load(name).name == name
    assert len(load("tour").effects) == sum(len(v) for k, v in BUILTIN.items() if k != "tour")
    good = tmp_path / "s.toml"
    good.write_text(
        '[[effects]]\nkind = "defect_burst"\nstart = 1\nend = 2\nrate = 0.7\n'
        '[[effects]]\nkind = "new_family"\nstart = 1.5\nfamily = "stain"\n'
    )
    scen = load(str(good))
    assert scen.name == "s" and scen.held_back() == {"stain"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[effects]]\nkind = "camera_silent"\nstart = 5\nend = 2\nrate = 3\n')
    with pytest.raises(ScenarioError) as exc:
        load(str(bad))
    assert "end" in str(exc.value) or "rate" in str(exc.value)
    with pytest.raises(ScenarioError):
        load("no-such-scenario")
    bad.write_text('[[effects]]\nkind = "meteor"\n')
    with pytest.raises(ScenarioError):
        load(str(bad))


def _fake_render(seed: object, part: str, defect: str | None, size: int = 64) -> tuple:
    rng = np.random.default_rng(abs(hash((str(seed), part, defect))) % 2**32)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr, mode="RGB"), {}


def test_frame_source_caches_renders_and_passes_tier_only_when_taken() -> None:
    cams, _ = topology(SPEC)
    calls: list[dict[str, object]] = []

    def with_tier(seed: object, part: str, defect: str | None, size: int = 64, tier: str = "x"):
        calls.append({"size": size, "tier": tier, "seed": seed})
        return _fake_render(seed, part, defect, size)

    assert takes_tier(with_tier) and not takes_tier(_fake_render)
    src = FrameSource(with_tier, 7, 32, "faint")
    frame = Frame(0, 0.0, None, 3, 1.0, ())
    a, b = src.jpeg(cams[0], frame), src.jpeg(cams[0], frame)
    seed = src.render_seed(cams[0], frame)  # what the truth file records to redraw it
    assert a == b and src.renders == 1 and calls == [{"size": 32, "tier": "faint", "seed": seed}]
    darker = src.jpeg(cams[0], Frame(1, 0.0, None, 3, 0.5, ()))
    assert src.renders == 1  # same render, new gain
    mean = [np.asarray(Image.open(io.BytesIO(x))).mean() for x in (a, darker)]
    assert mean[1] == pytest.approx(mean[0] * 0.5, rel=0.1)
    plain = FrameSource(_fake_render, 7, 32, "faint")  # an older renderer: no tier keyword
    assert not plain.tier_applied and plain.jpeg(cams[0], frame)


def test_wire_forms_decode_under_the_contract() -> None:
    cams, sensors = topology(SPEC)
    jpeg = FrameSource(_fake_render, 1, 64, None).jpeg(cams[0], Frame(5, 0.0, None, 0, 1.0, ()))
    part = part_id(cams[0], 5)
    raw, props = frame_message(jpeg, 5, 1_700_000_000.25, part, envelope=False)
    got = decode_input(frame_topic(cams[0].stream), raw, props or {})
    assert isinstance(got, FrameIn) and (got.seq, got.part) == (5, part)
    env, none = frame_message(jpeg, 6, 1_700_000_000.25, part, envelope=True)
    assert none is None and base64.b64decode(json.loads(env)["image"]) == jpeg
    got = decode_input(frame_topic(cams[0].stream), env)
    assert isinstance(got, FrameIn) and got.seq == 6 and got.encoding == "jpeg"
    readings = [(reading_at(SPEC, NONE, sensors[2], i), 1_700_000_000.0 + i) for i in range(3)]
    for sensor, batch, v5 in (
        (sensors[0], readings[:1], True),
        (sensors[0], readings[:1], False),
        (sensors[1], readings[:1], False),
        (sensors[2], readings, False),
    ):
        payload, p = sensor_message(sensor, batch, v5=v5)
        got = decode_input(sensor_topic(sensor.stream), payload, p or {})
        assert isinstance(got, SensorIn)
        assert [r.value for r in got.readings] == [r.value for r, _ in batch]
        keyed = v5 or sensor.form != "bare"
        assert [r.seq for r in got.readings] == [r.seq if keyed else None for r, _ in batch]


def test_a_publisher_epoch_keeps_a_restarted_lines_keys_apart() -> None:
    cams, sensors = topology(SPEC)
    jpeg = FrameSource(_fake_render, 1, 64, None).jpeg(cams[0], Frame(5, 0.0, None, 0, 1.0, ()))
    topic = frame_topic(cams[0].stream)
    keys = set()
    for epoch in (0, 1_796_570_000):
        for envelope in (False, True):
            payload, props = frame_message(jpeg, 5, 1.7e9, "p", envelope=envelope, epoch=epoch)
            got = decode_input(topic, payload, props or {})
            assert isinstance(got, FrameIn) and got.pub_epoch == epoch
            keys.add(got.key)
    assert len(keys) == 2  # one per epoch: the same seq of two runs is two frames
    readings = [(reading_at(SPEC, NONE, sensors[2], i), 1_700_000_000.0 + i) for i in range(3)]
    for sensor, batch in ((sensors[0], readings[:1]), (sensors[1], readings[:1]),
                          (sensors[2], readings)):  # fmt: skip
        payload, p = sensor_message(sensor, batch, v5=True, epoch=7)
        got = decode_input(sensor_topic(sensor.stream), payload, p or {})
        assert isinstance(got, SensorIn) and got.pub_epoch == 7


def test_the_sim_waits_for_live_processes_not_retained_leftovers() -> None:
    from broker.codecs import encode
    from broker.messages import WorkerStatus
    from broker.topics import worker_status_topic
    from broker.transport import Inbound
    from services.sim.ready import LiveRoles

    live = LiveRoles(["store", "edge", "dispatch"])
    acks: list[str] = []

    def status(worker: str, role: str, state: str, retain: bool, epoch: int = 0) -> Inbound:
        msg = WorkerStatus(worker=worker, role=role, state=state, counter=1, ts=NOW, epoch=epoch)  # type: ignore[arg-type]
        return Inbound(worker_status_topic(worker), encode(msg), retain=retain,
                       ack=lambda: acks.append(worker))  # fmt: skip

    live.on_status(status("d1", "dispatch", "online", retain=False))
    live.on_status(status("d1", "dispatch", "heartbeat", retain=False))  # may not lead yet
    assert "dispatch" in live.missing()
    live.on_status(status("d1", "dispatch", "heartbeat", retain=False))  # a round later

    live.on_status(status("W1", "edge", "online", retain=True))  # left from an earlier run
    live.on_status(status("st", "store", "offline", retain=False))
    live.on_status(status("c1", "cluster", "heartbeat", retain=False))  # not waited for
    assert live.missing() == ["edge", "store"] and len(acks) == 6
    live.on_status(status("W1", "edge", "heartbeat", retain=False))
    live.on_status(status("st", "store", "online", retain=False))
    assert live.missing() == [] and live.wait(0.0, threading.Event())


def test_two_runs_with_one_seed_publish_the_same_line(tmp_path: Path) -> None:
    from broker.loopback import LoopbackHub, LoopbackTransport
    from services.sim.runner import Simulator

    spec = LineSpec(stations=2, sensors=3, fps=10, sensor_hz=10, seed=11, defect_rate=0.3)
    scen = load("defect-burst")
    wall = {"ts", "started", "elapsed_s", "max_lag_s"}

    def run() -> tuple[list[dict[str, object]], list[tuple[str, bytes]], list[str]]:
        hub = LoopbackHub()
        seen: list[tuple[str, bytes]] = []
        obs = LoopbackTransport(hub, "obs")
        obs.subscribe("lw/v1/#", lambda m: seen.append((m.topic, m.payload)))
        obs.start()
        bus = LoopbackTransport(hub, "sim")
        bus.start()
        truth, said = io.StringIO(), list[str]()
        src = FrameSource(_fake_render, spec.seed, 32, None)
        sim = Simulator(spec, scen, bus, src, envelope=False, v5=True, truth=truth,
                        progress_s=0.5, say=said.append)  # fmt: skip
        sim.run(1.0, threading.Event())
        bus.stop()
        obs.stop()
        records = [json.loads(line) for line in truth.getvalue().splitlines()]
        return [{k: v for k, v in r.items() if k not in wall} for r in records], seen, said

    a, seen_a, said = run()
    b, seen_b, _ = run()
    assert a == b
    kinds = [r["kind"] for r in a]
    assert kinds[0] == "run" and kinds[-1] == "end" and kinds.count("frame") == 2 * 10
    frames_a = sorted(p for t, p in seen_a if t.endswith("/frame"))
    assert frames_a == sorted(p for t, p in seen_b if t.endswith("/frame"))
    assert len(said) >= 2 and said[-1].startswith("sim done") and "/s, target 20.0/s" in said[-1]


def test_a_stop_ends_the_wait_for_an_absent_broker() -> None:
    from services.sim.runner import Counts, Truth

    class Never:
        done = False

        def wait(self, timeout: float | None = None) -> bool:
            return False

    out, counts = io.StringIO(), Counts()
    truth = Truth(out, max_pending=2)
    truth.stop.set()  # as the signal handler does: add() must not block
    for i in range(5):
        truth.add(Never(), [{"kind": "frame", "seq": i}], counts)
    truth.finish(counts, timeout=0.0)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["seq"] for r in lines] == list(range(5)) and not any(r["acked"] for r in lines)
    assert (counts.acked, counts.unacked) == (0, 5)
