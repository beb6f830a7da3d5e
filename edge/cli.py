"""`linewatch edge --id W1 [--streams site/line/station/camera[,…]] [--model-dir D]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from broker.config import load_settings
from edge.settings import EdgeSettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linewatch edge",
        description=(
            "Run an edge worker: camera frames and sensor readings in over MQTT, verdicts, "
            "alerts, features and readings out. Settings: LINEWATCH_* variables or the TOML file "
            "named by LINEWATCH_CONFIG; options here win."
        ),
    )
    p.add_argument("--id", dest="worker_id", help="worker id [LINEWATCH_WORKER_ID, W1]")
    p.add_argument(
        "--streams",
        help="static assignment when no dispatcher runs: "
        "site/line/station/camera or site/line/station/(camera|sensor)/name, "
        "comma separated [LINEWATCH_STREAMS]",
    )
    p.add_argument(
        "--model-dir", help="built model directory [LINEWATCH_MODEL_DIR, var/models/demo]"
    )
    p.add_argument("--max-batch", type=int, help="largest inference batch [8]")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off [0]")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(
        EdgeSettings,
        worker_id=args.worker_id,
        streams=args.streams,
        model_dir=args.model_dir,
        max_batch=args.max_batch,
        metrics_port=args.metrics_port,
    )
    logging.getLogger().setLevel(settings.log_level)
    from broker.mqtt import MqttError, connect
    from edge.model.runtime import ModelLoadError
    from edge.startup import build_worker

    try:
        worker = build_worker(settings, connect(settings, f"edge-{settings.worker_id}"))
    except ModelLoadError as exc:
        print(f"linewatch edge: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.start(settings.streams)
    except MqttError as exc:
        print(f"linewatch edge: {exc}", file=sys.stderr)
        return 1
    print(
        f"edge worker {settings.worker_id} running; model {worker.model_version}; "
        f"streams {settings.streams or '(from the dispatcher)'}",
        flush=True,
    )
    stop.wait()
    worker.stop()
    return 0
