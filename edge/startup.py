"""Starting an edge worker: load the model, calibrate the batch wait, wire the worker and
the watcher that switches it to a new model card (edge/modelswitch.py)."""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_limits

from broker.transport import Transport
from edge.modelswitch import ModelWatcher, card_digest, load_model
from edge.runner import batch_fps, load_runner, single_latency_s
from edge.settings import EdgeSettings
from edge.worker import EdgeWorker

log = logging.getLogger(__name__)


def build_worker(settings: EdgeSettings, transport: Transport) -> EdgeWorker:
    """Load the model (one session), calibrate the batch wait, and wire a worker.

    numpy's BLAS (the novelty distances) is held to one thread: its threads would otherwise
    spin against onnxruntime's and the worker's own (measured on 2 busy cores: a 1024-entry
    bank scored 16 x slower with 2 BLAS threads than with 1).
    """
    threadpool_limits(1, user_api="blas")
    digest = card_digest(settings.model_dir)  # before loading: a newer card is switched to
    runner = load_runner(settings.model_dir, settings.intra_threads)
    bank = runner.default_bank(required=settings.bank_frames == 0)
    single = single_latency_s(runner)
    max_wait = single if settings.max_wait_ms is None else min(settings.max_wait_ms / 1000, single)
    fps = batch_fps(runner, settings.max_batch)
    log.info(
        "model %s: one image %.1f ms, batch of %d at %.1f images/s; max wait %.1f ms",
        runner.version,
        single * 1000,
        settings.max_batch,
        fps,
        max_wait * 1000,
    )
    worker = EdgeWorker(settings, transport, runner, runner.thresholds, bank, max_wait, fps)
    worker.model_watch = ModelWatcher(
        settings.model_dir,
        settings.model_watch_s,
        lambda d: load_model(settings, d),
        worker.switch_model,
        digest,
    )
    return worker
