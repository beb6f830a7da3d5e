"""Edge pipeline benchmark: raw onnxruntime vs the worker fed in-process and over MQTT.

All figures come from one run on one model file (the int8 file when the model has one, so
the worker RSS bar is measured with it): raw onnxruntime images/s at the worker's batch
size; the whole worker fed from an in-process (loopback) queue; the whole pipeline over
MQTT (frames published by a separate process, verdicts stored in SQL by `linewatch store`);
p95 frame -> verdict latency at half of the measured MQTT rate; the worker's RSS.

    python bench/pipeline.py [--model-dir var/models/demo] [--mqtt-url URL]

Without --mqtt-url it starts a private Mosquitto with broker/mosquitto.conf (bench/_broker.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _pipeline_mqtt as mq  # noqa: E402
from _broker import private_broker  # noqa: E402
from _common import bar, emit, host_info, make_report, spread  # noqa: E402

from edge.model.synthetic import DEFAULT_SIZE  # noqa: E402

OUT = ROOT / "var" / "bench" / "pipeline.json"
# Closed-loop feeders keep this many batches in flight: one being scored, one in the model,
# and two queued, so the worker is never starved by the feeder's own round trip (its
# two stages hold two batches; with fewer in flight the bench measures the feedback loop's
# latency, not the worker's throughput). Well under the 64-frame camera queues: no shedding.
WINDOW_BATCHES = 4


def model_file(model_dir: Path) -> Path:
    """The int8 file when the model has one (the RSS bar is about it), else the card's serve."""
    from edge.model.card import INT8_NAME, load_card

    if (model_dir / INT8_NAME).is_file():
        return model_dir / INT8_NAME
    return model_dir / load_card(model_dir).serve


def render_frames(size: int, n: int = 60) -> list[bytes]:
    """JPEG frames of the synthetic line at ``size`` px (10 % defective parts)."""
    from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES, render_frame

    out = []
    for i in range(n):  # one part in ten defective: a bad day on a real line
        defect = None if i % 10 else DEFECT_FAMILIES[(i // 10) % len(DEFECT_FAMILIES)]
        img = render_frame(7, i, PART_TYPES[i % len(PART_TYPES)], defect, size=size)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class RawOrt:
    """onnxruntime alone on preprocessed batches, with the worker's own session options
    (edge.runner.load_runner: same file, same settings)."""

    def __init__(self, path: Path, frames: list[bytes], batch: int) -> None:
        from edge.preprocess import preprocess_bytes
        from edge.runner import load_runner

        self.m = load_runner(path)
        self.x = preprocess_bytes(frames[:batch], self.m.spec)
        self.batch = batch
        self.m.run(self.x)

    def trial(self, seconds: float) -> float:
        """Images/s over ``seconds`` of back-to-back batches."""
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.m.run(self.x)
            n += self.batch
        return n / (time.perf_counter() - t0)

    def single_latency_ms(self, runs: int = 30) -> float:
        one = self.x[:1]
        lat = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.m.run(one)
            lat.append(time.perf_counter() - t0)
        return float(np.median(lat) * 1000)


class Inproc:
    """The whole worker over the loopback bus, fed closed-loop (it never sheds)."""

    def __init__(self, path: Path, frames: list[bytes]) -> None:
        from broker.loopback import LoopbackHub, LoopbackTransport
        from broker.topics import ALL_VERDICTS, StreamRef
        from edge.settings import EdgeSettings
        from edge.startup import build_worker

        hub = LoopbackHub()
        settings = EdgeSettings(
            worker_id="BENCH",
            model_dir=path,
            camera_queue=64,
            data_dir=Path(tempfile.mkdtemp(prefix="lw-bench-inproc-")),
        )
        self.worker = build_worker(settings, LoopbackTransport(hub, "edge-BENCH"))
        self.cams = [StreamRef.camera("bench", "L1", "st1", f"c{i}") for i in range(2)]
        self.worker.start([c.key for c in self.cams])
        self.feeder = LoopbackTransport(hub, "feeder")
        self.done = threading.Semaphore(0)
        self.feeder.subscribe(ALL_VERDICTS, lambda m: self.done.release())
        self.feeder.start()
        self.frames = frames
        self.seq = 0

    def trial(self, seconds: float) -> float:
        """Frames/s with a window of ``WINDOW_BATCHES`` batches in flight (see there)."""
        from broker.topics import frame_topic

        window = WINDOW_BATCHES * self.worker.batcher.max_batch
        inflight, n, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or inflight:
            while inflight < window and time.perf_counter() - t0 < seconds:
                cam = self.cams[self.seq % len(self.cams)]
                self.feeder.publish(
                    frame_topic(cam),
                    self.frames[self.seq % len(self.frames)],
                    properties={"seq": str(self.seq)},
                )
                self.seq += 1
                inflight += 1
            if not self.done.acquire(timeout=60):
                raise RuntimeError("in-process worker stopped answering")
            inflight -= 1
            n += 1
        return n / (time.perf_counter() - t0)

    def stats(self) -> dict[str, float]:
        v = self.worker.metrics.value
        batches = v("linewatch_edge_batch_size_count")
        return {
            "shed": v("linewatch_edge_shed_frames_total"),
            "mean_batch": v("linewatch_edge_batch_size_sum") / max(batches, 1),
        }

    def stop(self) -> None:
        self.feeder.stop()
        self.worker.stop()


def measure(
    model_dir: Path, mqtt_url: str, seconds: float, trials: int
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Every phase, in one run on one model file: (results, bars, worst ratio spread).

    Each pipeline trial is paired with a raw onnxruntime trial run right before it, and the
    ratios are taken per pair: load that drifts during the run (a shared machine) hits both
    sides of a pair alike instead of skewing one side of the comparison.
    """
    from edge.model.card import load_card
    from edge.settings import EdgeSettings

    path = model_file(model_dir)
    card = load_card(model_dir)
    size = card.input.size
    # at the camera's resolution, as the line publishes them (the worker resizes): frames
    # drawn at the model's size are not what the variation models were fitted on and flag
    # about one good part in five, which inflated the evidence work the bench measured
    frames = render_frames(int(card.recipe.get("render_size") or DEFAULT_SIZE))
    batch = EdgeSettings().max_batch
    raw = RawOrt(path, frames, batch)
    single = raw.single_latency_ms()
    ip = Inproc(path, frames)
    try:
        ip.trial(seconds / 2)  # warm-up
        pairs = [(raw.trial(seconds), ip.trial(seconds)) for _ in range(trials)]
        ip_stats = ip.stats()
    finally:
        ip.stop()
    net = mq.run(
        path,
        frames,
        mqtt_url,
        seconds,
        single,
        trials,
        raw_trial=raw.trial,
        window=WINDOW_BATCHES * batch,
    )
    return _report(path, size, batch, single, pairs, ip_stats, net)


def _report(
    path: Path,
    size: int,
    batch: int,
    single: float,
    pairs: list[tuple[float, float]],
    ip_stats: dict[str, float],
    net: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    ip_ratios = [i / r for r, i in pairs]
    mq_ratios = [m / r for r, m in net["pairs"]]
    raw_all = [r for r, _ in pairs] + [r for r, _ in net["pairs"]]
    results = {
        "model_file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "input_size": size,
        "batch": batch,
        "defective_fraction": 0.1,
        "raw_images_per_s": round(float(np.median(raw_all)), 2),
        "single_image_latency_ms": round(single, 2),
        "inproc_frames_per_s": round(float(np.median([i for _, i in pairs])), 2),
        "mqtt_frames_per_s": round(float(np.median([m for _, m in net["pairs"]])), 2),
        "inproc_vs_raw": round(float(np.median(ip_ratios)), 3),
        "mqtt_vs_raw": round(float(np.median(mq_ratios)), 3),
        "half_load_fps": round(net["half_load_fps"], 2),
        "p95_latency_ms": round(net["p95_latency_ms"], 2),
        "p50_latency_ms": round(net["p50_latency_ms"], 2),
        "worker_rss_mb": round(net["worker_rss_mb"], 1),
        "worker_peak_rss_mb": round(net["worker_peak_rss_mb"], 1),
        "frames_stored": net["stored"],
        "frames_published": net["published"],
        "inproc_shed": ip_stats["shed"],
        "inproc_mean_batch": round(ip_stats["mean_batch"], 2),
        "trials": {
            "raw_inproc_pairs": pairs,
            "raw_mqtt_pairs": net["pairs"],
            "inproc_vs_raw": ip_ratios,
            "mqtt_vs_raw": mq_ratios,
        },
        "load_after": round(os.getloadavg()[0], 2),
    }
    bars = [
        bar("mqtt_vs_raw", results["mqtt_vs_raw"], ">=", 0.70),
        bar("inproc_vs_raw", results["inproc_vs_raw"], ">=", 0.85),
        bar("p95_latency_ms", results["p95_latency_ms"], "<=", 3 * single + 20),
        bar("worker_rss_mb", results["worker_rss_mb"], "<=", 600),
    ]
    return results, bars, max(spread(ip_ratios), spread(mq_ratios))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, default=ROOT / "var" / "models" / "demo")
    p.add_argument(
        "--mqtt-url",
        default=None,
        help="broker to use; default: a private Mosquitto with broker/mosquitto.conf "
        "(bench/_broker.py), so no other work shares it",
    )
    p.add_argument("--seconds", type=float, default=8.0, help="length of each trial")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    host = host_info()
    try:
        if not (args.model_dir / "model.card.json").is_file():
            raise FileNotFoundError(f"no model in {args.model_dir} (run `linewatch model build`)")
        with ExitStack() as stack:
            url = args.mqtt_url or stack.enter_context(private_broker())
            results, bars, worst = measure(args.model_dir, url, args.seconds, args.trials)
        results["broker"] = (
            args.mqtt_url if args.mqtt_url else "private mosquitto, broker/mosquitto.conf"
        )
        report = make_report(results, bars, spread=worst, host=host)
        code = 0
    except Exception as exc:  # still one JSON object: what failed, nothing measured
        print(f"bench/pipeline.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        report = make_report({"error": f"{type(exc).__name__}: {exc}"[:500]}, [], host=host)
        report["verdict"] = "inconclusive"
        code = 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    emit(report)
    return code


if __name__ == "__main__":
    sys.exit(main())
