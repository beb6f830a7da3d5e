"""`linewatch store [run] | retention [--dry-run]`: the history writer and its retention."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from sqlalchemy import Engine

from services.store.engine import SchemaBehind, make_engine, require_head
from services.store.retention import Retention
from services.store.settings import StoreSettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linewatch store", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    run = sub.add_parser("run", help="run the batching history writer (the default)")
    run.add_argument(
        "--name",
        help="writer name; MQTT client id is store-NAME (stable, so "
        "its persistent session survives restarts) [LINEWATCH_STORE_NAME]",
    )
    run.add_argument(
        "--stats-json",
        action="store_true",
        help="print the writer's counters as one JSON line per keepalive",
    )
    ret = sub.add_parser("retention", help="delete what the retention settings say may go")
    ret.add_argument("--dry-run", action="store_true", help="only report what would go")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv or ["run"])
    from broker.config import load_settings

    settings = load_settings(StoreSettings, store_name=getattr(args, "name", None))
    logging.getLogger().setLevel(settings.log_level)
    engine = make_engine(
        settings.db_url,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        immediate=True,
    )
    try:
        require_head(engine)
    except SchemaBehind as exc:
        print(f"linewatch store: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "retention":
        from services.store.retention import Retention

        report = Retention(engine, settings).run(dry_run=args.dry_run)
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    return run(settings, engine, stats_json=bool(getattr(args, "stats_json", False)))


def run(settings: StoreSettings, engine: Engine, *, stats_json: bool = False) -> int:
    """Run the writer until SIGTERM/SIGINT; heartbeats every keepalive; periodic retention."""
    from broker.liveness import Liveness
    from broker.mqtt import connect
    from broker.mqtt_support import MqttError
    from services.store.writer import StoreWriter

    name = f"store-{settings.store_name}"
    transport = connect(settings, name)
    liveness = Liveness(transport, name, "store", settings.data_dir / "state")
    writer = StoreWriter(
        engine,
        transport,
        batch_rows=settings.store_batch_rows,
        flush_ms=settings.store_flush_ms,
        max_pending=settings.store_max_pending,
        evidence_max_bytes=settings.evidence_max_bytes,
        backoff_max_s=settings.store_backoff_max_s,
        site=settings.store_site,
    )
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the store writer", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    # subscribe BEFORE connecting: a resumed persistent session redelivers at once, and a
    # message that arrives before its subscription is registered would have no handler
    writer.start()
    try:
        transport.start()
    except MqttError as exc:
        print(f"linewatch store: {exc}", file=sys.stderr)
        writer.stop()
        return 1
    liveness.birth()
    log.info("store writer %s running: %s", name, settings.summary())
    if settings.retention_interval_s > 0:
        threading.Thread(
            target=_retention_loop,
            name="store-retention",
            daemon=True,
            args=(Retention(engine, settings), stop, settings.retention_interval_s),
        ).start()
    if settings.store_sweep_interval_s > 0:
        from services.store.sweep import HoleSweep, sweep_loop

        sweep = HoleSweep(
            engine, name, grace_s=settings.store_sweep_grace_s, site=settings.store_site
        )
        threading.Thread(
            target=sweep_loop,
            name="store-sweep",
            daemon=True,
            args=(sweep, stop, settings.store_sweep_interval_s),
        ).start()
    while not stop.wait(settings.keepalive_s):
        st = writer.stats()
        liveness.heartbeat(queue_depth=st.get("pending", 0))
        log.debug("store stats %s", st)
        if stats_json:
            mq = {f"mqtt_{k}": v for k, v in transport.stats().items()}
            print(json.dumps({"store": name, **st, **mq}), flush=True)
    writer.stop()
    liveness.death()
    transport.stop()
    log.info("store writer %s stopped: %s", name, writer.stats())
    if stats_json:
        print(json.dumps({"store": name, "stopped": True, **writer.stats()}), flush=True)
    return 0


def _retention_loop(retention: Retention, stop: threading.Event, interval_s: float) -> None:
    """Retention every ``interval_s`` on its own thread (heartbeats never wait for it)."""
    while not stop.wait(interval_s):
        try:
            retention.run()
        except Exception:
            log.exception("retention run failed; the writer keeps running")
