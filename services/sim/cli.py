"""`linewatch sim`: a simulated production line publishing frames and sensor readings over MQTT."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO, get_args

from pydantic import Field

from broker.config import CommonSettings, load_settings, redact_url
from broker.messages import Role
from broker.topics import ALL_STATUS, check_id
from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES, render_part
from services.sim.ready import LiveRoles, listen
from services.sim.runner import Simulator
from services.sim.scenario import Scenario, ScenarioError, check_families, combine, load
from services.sim.timeline import FORMS, Frame, LineSpec
from services.sim.wire import FrameSource

log = logging.getLogger("linewatch.sim")
ROLES: tuple[str, ...] = get_args(Role)


class SimSettings(CommonSettings):
    """Settings of `linewatch sim` (the line itself is chosen with options)."""

    # MQTT client id sim-NAME; default: the site id, so two simulated sites never take over
    # each other's connection
    sim_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,60}$")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linewatch sim",
        description="Publish a simulated production line over the MQTT contract: camera "
        "frames from the synthetic renderer and sensor readings, deterministic by seed.",
    )
    a = p.add_argument
    a("--site", default="plant1", help="site id (default plant1)")
    a("--lines", type=int, default=1, help="lines (default 1)")
    a("--stations", type=int, default=2, help="stations per line (default 2)")
    a("--cameras", type=int, default=1, help="cameras per station (default 1)")
    a("--sensors", type=int, default=4, help="sensors per station (default 4)")
    a("--fps", type=float, default=2.0, help="frames per second per camera (default 2)")
    a("--sensor-hz", type=float, default=5.0, help="readings per second per sensor (default 5)")
    a("--defect-rate", type=float, default=0.05, help="share of defective parts (default 0.05)")
    a("--seed", type=int, default=0, help="everything published follows from it (default 0)")
    a(
        "--epoch",
        type=int,
        default=0,
        help="publisher epoch of every input (default 0); a new one per run keeps a restarted "
        "line's sequence numbers apart from the last run's in the history",
    )
    a("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    a(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME|FILE.toml",
        help="timed effects (repeatable): none, defect-burst, new-family, lighting-drift, "
        "camera-silent, sensor-spike, sensor-drift, stuck-value, tour (all), or a TOML file",
    )
    a("--truth", type=Path, default=None, help="write the ground truth here (JSON lines)")
    a("--size", type=int, default=448, help="frame side in pixels (default 448)")
    a("--tier", default="standard", help="defect tier, when the renderer has tiers")
    a("--pool", type=int, default=12, help="renders per camera and label (0: all distinct)")
    a("--no-prerender", action="store_true", help="do not render the good frames up front")
    a("--parts", default="washer,bracket,pcb", help="part types, one per camera round robin")
    a(
        "--frame-form",
        choices=("auto", "raw", "envelope"),
        default="auto",
        help="raw JPEG + MQTT v5 properties, or the JSON envelope (auto: by protocol)",
    )
    a(
        "--sensor-form",
        choices=("mixed", *FORMS),
        default="mixed",
        help="bare number, JSON reading, readings batch, or mixed (by sensor; default)",
    )
    a("--progress", type=float, default=5.0, help="seconds between progress lines (0: none)")
    a(
        "--wait-for",
        default="",
        metavar="ROLE[,ROLE]",
        help="start only once a process of each role is live on the bus (e.g. store,dispatch,"
        "edge; `linewatch up --sim` passes the roles it runs)",
    )
    a("--wait-timeout", type=float, default=300.0, help="then start anyway (default 300 s)")
    return p


def _roles(args: argparse.Namespace) -> list[str]:
    return [r.strip() for r in args.wait_for.split(",") if r.strip()]


def _spec(args: argparse.Namespace) -> LineSpec:
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    problems = [
        f"{name} must be {rule}"
        for name, ok, rule in (
            ("--lines", 1 <= args.lines <= 50, "1..50"),
            ("--stations", 1 <= args.stations <= 50, "1..50"),
            ("--cameras", 0 <= args.cameras <= 20, "0..20"),
            ("--sensors", 0 <= args.sensors <= 200, "0..200"),
            ("--fps", 0 < args.fps <= 120, "in (0, 120]"),
            ("--sensor-hz", 0 < args.sensor_hz <= 1000, "in (0, 1000]"),
            ("--defect-rate", 0 <= args.defect_rate <= 1, "in [0, 1]"),
            ("--duration", args.duration is None or args.duration > 0, "positive"),
            ("--size", 16 <= args.size <= 2048, "16..2048"),
            ("--pool", 0 <= args.pool <= 1000, "0..1000"),
            ("--epoch", 0 <= args.epoch <= 2**62, "0..2**62"),
            ("--wait-for", set(_roles(args)) <= set(ROLES), f"roles from {ROLES}"),
            ("--parts", bool(parts) and set(parts) <= set(PART_TYPES), f"from {PART_TYPES}"),
        )
        if not ok
    ]
    if problems:
        raise ValueError("; ".join(problems))
    return LineSpec(
        site=args.site,
        lines=args.lines,
        stations=args.stations,
        cameras=args.cameras,
        sensors=args.sensors,
        fps=args.fps,
        sensor_hz=args.sensor_hz,
        defect_rate=args.defect_rate,
        seed=args.seed,
        part_types=parts,
        families=tuple(DEFECT_FAMILIES),
        pool=args.pool,
        sensor_form=args.sensor_form,
        batch_n=max(1, round(args.sensor_hz / 2)),  # a batch every half second
        epoch=args.epoch,
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(SimSettings)
    try:
        spec = _spec(args)
        scenario = combine(load(s) for s in args.scenario)
        check_families(scenario, spec.families)
        check_id(spec.site, "site")
    except (ValueError, ScenarioError) as exc:
        print(f"linewatch sim: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("got %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as stack:
        truth: TextIO | None = None
        if args.truth is not None:
            args.truth.parent.mkdir(parents=True, exist_ok=True)
            truth = stack.enter_context(args.truth.open("w", encoding="utf-8", buffering=1))
        return _run(args, settings, spec, scenario, truth, stop)


def _run(
    args: argparse.Namespace,
    settings: SimSettings,
    spec: LineSpec,
    scenario: Scenario,
    truth: TextIO | None,
    stop: threading.Event,
) -> int:
    from broker.mqtt import MqttError
    from broker.mqtt import connect as mqtt_connect

    frames = FrameSource(render_part, spec.seed, args.size, args.tier)
    if args.tier != "standard" and not frames.tier_applied:
        log.warning("this build's renderer has no tiers: --tier %s ignored", args.tier)
    bus = mqtt_connect(settings, f"sim-{settings.sim_name or spec.site}", clean_start=True)
    live = listen(bus, _roles(args))
    try:
        bus.start()
    except MqttError as exc:
        print(f"linewatch sim: {exc}", file=sys.stderr)
        return 1
    try:
        v5 = bus.protocol == "MQTT v5"
        envelope = args.frame_form == "envelope" or (args.frame_form == "auto" and not v5)
        sim = Simulator(
            spec,
            scenario,
            bus,
            frames,
            envelope=envelope,
            v5=v5,
            truth=truth,
            progress_s=args.progress,
            say=lambda line: print(line, flush=True),
        )
        print(
            f"linewatch sim: {len(sim.cameras)} camera(s) at {spec.fps:g} fps, "
            f"{len(sim.sensors)} sensor(s) at {spec.sensor_hz:g} Hz, {args.size} px, "
            f"seed {spec.seed}, scenario {scenario.name}, frames as "
            f"{'JSON envelopes' if envelope else 'raw JPEG'} to {redact_url(settings.mqtt_url)} "
            f"({bus.protocol})",
            flush=True,
        )
        if not args.no_prerender:
            _prerender(sim, stop)
        if live.wanted:
            _await(live, args.wait_timeout, stop)
            bus.unsubscribe(ALL_STATUS)
        counts = sim.run(args.duration, stop)
    finally:
        bus.stop()
    return 0 if counts.unacked == 0 else 1


def _await(live: LiveRoles, timeout: float, stop: threading.Event) -> None:
    print(f"linewatch sim: waiting for {', '.join(sorted(live.wanted))} to be live", flush=True)
    if not live.wait(timeout, stop) and not stop.is_set():
        log.warning("still no live %s after %.0fs: starting anyway", live.missing(), timeout)


def _prerender(sim: Simulator, stop: threading.Event) -> None:
    """Render every camera's pool of good frames before the clock starts."""
    began = time.monotonic()
    for cam in sim.cameras:
        for slot in range(sim.spec.pool):
            if stop.is_set():
                return
            sim.frames.jpeg(cam, Frame(0, 0.0, None, slot, 1.0, ()))
    if sim.frames.renders:
        print(
            f"linewatch sim: pre-rendered {sim.frames.renders} frame(s) in "
            f"{time.monotonic() - began:.1f}s",
            flush=True,
        )
