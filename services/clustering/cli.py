"""`linewatch cluster [run]` runs the service; `linewatch cluster eval` measures the core."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from broker.config import load_settings
from services.clustering.settings import ClusterSettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linewatch cluster", description="defect-family clustering service"
    )
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("run", help="consume features, publish families and alerts (default)")
    ev = sub.add_parser("eval", help="stream a labelled data set through the core offline")
    ev.add_argument(
        "--dataset",
        required=True,
        help="synthetic (the synthetic line through the demo model), iris, "
        "gaussian (generated 2048-d families), or FILE.npz with X and y",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--n", type=int, default=500, help="anomalies for synthetic/gaussian")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--model-dir",
        type=Path,
        default=Path("var/models/demo"),
        help="model for --dataset synthetic",
    )
    ev.add_argument("--method", default=None, help="refit clusterer (ward, kmeans, birch)")
    ev.add_argument("--threshold-factor", type=float, default=None)
    ev.add_argument("--components", type=int, default=None)
    ev.add_argument(
        "--save-npz",
        type=Path,
        default=None,
        help="also write the streamed vectors and labels to this .npz",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "eval":
        return _eval(args)
    return run()


def _eval(args: argparse.Namespace) -> int:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from services.clustering import eval as ev
    from services.clustering.core import CoreConfig

    warnings.filterwarnings("ignore", module="sklearn")
    try:
        ds = _dataset(args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"linewatch cluster eval: {exc}", file=sys.stderr)
        return 2
    if args.save_npz:
        np.savez(args.save_npz, X=ds.x, y=ds.y)
    cfg = CoreConfig()
    overrides = {
        "method": args.method,
        "threshold_factor": args.threshold_factor,
        "n_components": args.components,
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    with threadpool_limits(1):  # as the service runs (the model above used its own threads)
        result = ev.evaluate(ds, cfg)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


def _dataset(args: argparse.Namespace) -> Any:
    from services.clustering import eval as ev

    name = args.dataset
    if name == "iris":
        return ev.iris(args.seed)
    if name == "gaussian":
        return ev.gaussian_families(n=args.n, seed=args.seed)
    if name == "synthetic":
        from services.clustering import synthline  # imports edge: CLI path only (DESIGN §2)

        return synthline.dataset(args.model_dir, n=args.n, seed=args.seed)
    path = Path(name)
    if path.suffix != ".npz":
        raise ValueError(f"--dataset {name!r}: use synthetic, iris, gaussian or a FILE.npz")
    return ev.load_npz(path)


def _print_table(r: dict[str, Any]) -> None:
    print(
        f"dataset {r['dataset']} ({r['note']}): {r['n']} vectors of {r['dim']} dims, "
        f"{r['true_families']} true families"
    )
    print(
        f"  families found     {r['families']}   refits {r['refits']}   ids issued "
        f"{r['ids_issued']}   new-family alerts {r['new_family_alerts']}"
    )
    print(f"  ARI (as published) {r['ari']:.3f}   purity {r['purity']:.3f}")
    print(f"  ARI (final model)  {r['ari_final']:.3f}   purity {r['purity_final']:.3f}")
    print(
        f"  throughput         {r['vectors_per_s']} vectors/s, "
        f"{r['cpu_us_per_vector']} CPU µs per vector"
    )
    for late in r["late_families"]:
        print(
            f"  late family {late['label']} (first at #{late['first_index']}): ids "
            f"{late['ids']}, new-family alert after {late['alert_after_members']} members"
        )


def run() -> int:
    """Run the service until SIGTERM / SIGINT; state saved on the way out."""
    from threadpoolctl import threadpool_limits

    from broker.liveness import Liveness
    from broker.mqtt import connect
    from services.clustering.service import ClusterService
    from services.clustering.state import StateError

    settings = load_settings(ClusterSettings)
    threadpool_limits(1)  # small matrices: one BLAS thread, no spinning siblings
    logging.getLogger().setLevel(settings.log_level)
    transport = connect(settings, settings.cluster_id)
    service = ClusterService(transport, settings)
    try:
        service.load()
    except StateError as exc:
        print(f"linewatch cluster: {exc} (move it away to start afresh)", file=sys.stderr)
        return 2
    liveness = Liveness(transport, settings.cluster_id, "cluster", settings.data_dir / "state")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    transport.start()
    service.start()
    liveness.birth()
    log.info(
        "clustering %s up on %s; state %s",
        settings.cluster_id,
        settings.summary()["mqtt_url"],
        settings.state_path,
    )
    try:
        _serve(service, liveness, stop)
    finally:
        service.save()
        liveness.death()
        transport.stop()
    return 0


def _serve(service: Any, liveness: Any, stop: threading.Event) -> None:
    """Housekeeping every second and heartbeats until ``stop``."""
    next_beat = 0.0
    while not stop.wait(1.0):
        try:
            service.tick()
        except Exception as exc:  # broker away or disk full: retried at the next tick
            log.warning("cluster housekeeping failed: %s", exc)
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + service.settings.cluster_heartbeat_s
            s = service.stats()
            liveness.heartbeat(
                queue_depth=service.transport.stats().get("inbound_queue", 0),
                labels={"families": str(s["families"]), "seen": str(s["seen"])},
            )
