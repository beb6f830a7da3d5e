"""Process entry of `linewatch dispatch run`: settings, MQTT, liveness, SQL, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from broker.config import load_settings, redact_text, redact_url
from broker.liveness import Liveness
from services.dispatcher.ports import AssignmentStore, LeaderLock
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings

log = logging.getLogger(__name__)


def _sql(settings: DispatchSettings) -> tuple[LeaderLock | None, AssignmentStore | None]:
    """Leader lease and assignment store on the history DB (services.store)."""
    from services.dispatcher.sqlstore import open_sql

    return open_sql(settings)


def run_forever(dispatcher_id: str | None = None) -> int:
    settings = load_settings(DispatchSettings, dispatcher_id=dispatcher_id)
    logging.getLogger().setLevel(settings.log_level)
    from broker.mqtt import connect

    transport = connect(settings, f"lw-dispatch-{settings.dispatcher_id}")
    liveness = Liveness(transport, settings.dispatcher_id, "dispatch", settings.data_dir / "state")
    try:
        lock, store = _sql(settings)
    except Exception as exc:  # SchemaBehind, unreachable DB: say so and exit non-zero
        detail = redact_text(str(exc), settings.db_url)
        print(
            f"linewatch dispatch: database {redact_url(settings.db_url)}: {detail}", file=sys.stderr
        )
        return 2
    d = Dispatcher(settings, transport, liveness=liveness, lock=lock, store=store)
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("dispatcher: signal %d, stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "dispatcher %s: mqtt %s, db %s, %d streams",
        settings.dispatcher_id,
        redact_url(settings.mqtt_url),
        redact_url(settings.db_url),
        len(settings.streams),
    )
    d.start()
    done.wait()
    d.stop()
    return 0
