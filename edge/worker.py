"""The edge worker process: a thin shell wiring the transport to the frame and sensor paths."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from broker.codecs import Rejected, decode_input, decode_output
from broker.liveness import Liveness
from broker.messages import (
    Assignment,
    FrameIn,
    SensorIn,
    ThresholdControl,
    utcnow,
)
from broker.teach_messages import FeedbackControl, TeachState
from broker.topics import (
    Kind,
    StreamRef,
    TopicError,
    alert_topic,
    assignment_topic,
    parse,
    sensor_anomaly_topic,
    threshold_change_topic,
)
from broker.transport import Inbound, Transport
from edge.acks import AckTracker
from edge.assignment import (
    AssignmentState,
    StaleAssignment,
    StreamHandlers,
    Subscriptions,
    decode_assignment,
    load_assignment,
    save_assignment,
)
from edge.batcher import Batcher
from edge.frames import FrameStage
from edge.heartbeat import Heartbeat, LoadMeter
from edge.metrics import EdgeMetrics
from edge.modelswitch import (
    LoadedModel,
    ModelWatcher,
    SwitchingPipeline,
    make_pipeline,
)
from edge.outputs import Outputs
from edge.pipeline import (
    FrameJob,
    PipelineConfig,
    Runner,
)
from edge.scoring import Thresholds
from edge.sensorpath import SensorPath
from edge.sensors import SensorChecks
from edge.seqgaps import SeqGaps
from edge.settings import EdgeSettings
from edge.teach import TeachError
from edge.teachpath import TeachPath
from edge.thresholds import ThresholdError

log = logging.getLogger(__name__)


class EdgeWorker:
    """Frames and sensors in over a Transport, verdicts/alerts/features/readings out.

    Threads: the transport's delivery thread runs the handlers (decode, checks, queueing,
    sensor scoring); one inference thread takes micro-batches and publishes results; one
    ticker thread reports missing seqs, flushes sensor readings and sends heartbeats.
    Every input is acked only once all its outputs are acknowledged by the broker.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        transport: Transport,
        runner: Runner,
        default_thresholds: Thresholds,
        default_bank: np.ndarray | None,
        max_wait_s: float,
        baseline_fps: float = 0.0,
    ) -> None:
        s = settings
        self.settings = s
        self.worker = s.worker_id
        self.transport = transport
        self.metrics = EdgeMetrics(self.worker)
        self.acks = AckTracker()
        self.out = Outputs(transport, self.acks, self.metrics, self.worker)
        self.state = AssignmentState()
        self.gaps = SeqGaps(s.reorder_timeout_s, self.out, lambda: self.state.epoch)
        self.meter = LoadMeter()
        self.meter.baseline_fps = baseline_fps
        self.batcher: Batcher[FrameJob] = Batcher(
            s.max_batch, max_wait_s, s.camera_queue, s.total_queue
        )
        config = PipelineConfig(
            self.worker,
            thumbnail_px=s.thumbnail_px,
            thumbnail_bytes=s.thumbnail_bytes,
            history_sample_every=s.history_sample_every,
        )
        self.pipeline = SwitchingPipeline(
            make_pipeline(s, runner, default_thresholds, default_bank, config)
        )
        self.sensors = SensorPath(
            self.worker,
            SensorChecks(s.sensor_alpha, s.sensor_z, s.sensor_warmup, s.sensor_stuck),
            s.limit_for,
            s.readings_batch,
            s.readings_flush_ms / 1000,
        )
        self.stage = FrameStage(self)
        self.teaching = TeachPath(self.pipeline, self.out, self.worker)
        self.subs = Subscriptions(
            transport,
            StreamHandlers(self.on_frame, self.on_sensor, self.on_control),
            self._on_removed,
        )
        self.liveness = Liveness(transport, self.worker, "edge", s.state_dir)  # sets the will
        self.heartbeat = Heartbeat(self.liveness, self._status_fields, s.heartbeat_s)
        self.model_version = runner.version
        self.model_watch: ModelWatcher[LoadedModel] | None = None  # set by edge.startup
        self._assignment_file = s.state_dir / f"{self.worker}.assignment.json"
        self._accepting = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self, static_streams: Sequence[str] = ()) -> None:
        """Subscribe, connect and run.

        The streams to serve are subscribed BEFORE connecting: a resumed persistent session
        redelivers unacknowledged frames at once, and they must find their handler. They are
        the static ``--streams`` when given, else the last assignment this worker followed;
        the dispatcher's retained assignment then replaces them (a newer epoch wins).
        """
        self.acks.start()
        self.transport.subscribe(assignment_topic(self.worker), self.on_assignment)
        self._accepting = True
        if static_streams:
            self._apply(
                Assignment(
                    worker=self.worker,
                    epoch=0,
                    streams=tuple(static_streams),
                    dispatcher="static",
                    ts=utcnow(),
                ),
                remember=False,
            )
        else:
            remembered = load_assignment(self._assignment_file, self.worker)
            if remembered is not None:
                self._apply(remembered, remember=False)
        for name, target in (("edge-infer", self.stage.run), ("edge-ticker", self._tick_loop)):
            th = threading.Thread(target=target, name=f"{name}-{self.worker}", daemon=True)
            th.start()
            self._threads.append(th)
        self.transport.start()
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_host, self.settings.metrics_port)
        self.heartbeat.birth()
        if self.model_watch is not None:
            self.model_watch.start()
        log.info(
            "edge worker %s started (model %s, max batch %d, max wait %.1f ms)",
            self.worker,
            self.model_version,
            self.batcher.max_batch,
            self.batcher.max_wait_s * 1000,
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful: stop taking input, finish queued frames, flush, death, disconnect."""
        self._accepting = False  # new deliveries stay unacked: the broker redelivers them
        if self.model_watch is not None:
            self.model_watch.stop()
        self.batcher.close()
        deadline = time.monotonic() + timeout
        for th in self._threads:
            if th.name.startswith("edge-infer"):
                th.join(max(0.1, deadline - time.monotonic()))
        self._stop.set()
        for th in self._threads:
            th.join(max(0.1, deadline - time.monotonic()))
        self.flush_readings(force=True)
        self.gaps.report_open(deadline)
        if not self.acks.drain(max(0.1, deadline - time.monotonic())):
            log.warning(
                "%d inputs still wait for output acks at stop; they will be redelivered",
                self.acks.pending,
            )
        self.heartbeat.death()
        self.transport.stop()
        self.acks.stop()
        self.metrics.close()
        log.info("edge worker %s stopped", self.worker)

    def switch_model(self, model: LoadedModel) -> None:
        """Serve ``model`` from the next batch on, without a restart (edge/modelswitch.py);
        per-camera state starts anew as ``make_pipeline`` says."""
        new = make_pipeline(
            self.settings, model.runner, model.thresholds, model.bank, self.pipeline.current.config
        )
        old = self.pipeline.swap(new)
        self.model_version = model.runner.version
        self.heartbeat.now()  # announce the version at once
        log.info("model switched: %s -> %s", old.runner.version, self.model_version)

    def _status_fields(self) -> dict[str, object]:
        depth = self.batcher.depth()
        self.metrics.queue_depth.set(depth)
        self.metrics.capacity.set(self.meter.capacity_fps())
        self.metrics.pending_acks.set(self.acks.pending)
        return {
            "capacity_fps": round(self.meter.capacity_fps(), 3),
            "load": round(self.meter.load(), 4),
            "queue_depth": depth,
            "p95_ms": round(self.meter.p95_ms(), 3),
            "model_version": self.model_version,
            "cost_per_hour": self.settings.cost_per_hour,
            "labels": self.settings.labels,
            # subscribed, not merely assigned: the dispatcher hands held inputs of a stream to
            # the worker whose status lists it (services/dispatcher/discovery.py)
            "streams": tuple(sorted(s.key for s in self.subs.subscribed())),
            "epoch": self.state.epoch,
        }

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.gaps.report_expired()
                self.flush_readings()
                self.heartbeat.tick()
            except Exception:  # the ticker must survive anything
                log.exception("edge ticker step failed")

    # ---- handlers (delivery thread) --------------------------------------------------------

    def on_frame(self, msg: Inbound) -> None:
        if not self._accepting:
            return  # stopping: left unacked, redelivered to the next incarnation
        try:
            frame = decode_input(msg.topic, msg.payload, msg.properties, msg.receipt)
        except Rejected as err:
            self.metrics.frames.labels("rejected").inc()
            self.out.dead(msg, err)
            return
        if not isinstance(frame, FrameIn):
            self.out.dead(msg, Rejected("bad_topic", "a sensor payload on a frame topic"))
            return
        if not self.state.holds(frame.stream):
            # Delivered just before the unsubscribe took effect: the stream belongs to its new
            # owner, which accounts for it (it receives it too, or its take-over gap covers
            # it). A record here could contradict the new owner's verdict, so none is made.
            self.metrics.frames.labels("unassigned").inc()
            msg.ack()
            return
        self.stage.accept(msg, frame)

    def on_sensor(self, msg: Inbound) -> None:
        if not self._accepting:
            return
        try:
            sensor_in = decode_input(msg.topic, msg.payload, msg.properties, msg.receipt)
        except Rejected as err:
            self.out.dead(msg, err)
            return
        if not isinstance(sensor_in, SensorIn):
            self.out.dead(msg, Rejected("bad_topic", "a frame payload on a sensor topic"))
            return
        pending = self.out.open_ack(msg, sensor_in.key)
        stream = sensor_in.stream
        if not self.state.holds(stream):
            self.out.gap_for(
                stream,
                sensor_in.key,
                None,
                "failover",
                pending,
                epoch=self.state.epoch,
                count=len(sensor_in.readings),
            )
            return
        self.gaps.observe(
            stream, sensor_in.pub_epoch, [r.seq for r in sensor_in.readings if r.seq is not None]
        )
        out = self.sensors.handle(sensor_in, pending, self.state.epoch, utcnow())
        for inv in out.invalid:
            self.out.dead(msg, inv.error, pending, receipt=f"{msg.receipt}/{inv.index}")
        for anomaly in out.anomalies:
            self.metrics.sensor_anomalies.labels(anomaly.kind).inc()
            self.out.publish(sensor_anomaly_topic(stream), anomaly, pending)
        for alert in out.alerts:
            self.out.publish(alert_topic(stream.site, stream.line, stream.station), alert, pending)
        pending.seal()
        self.flush_readings()

    def on_control(self, msg: Inbound) -> None:
        if not msg.payload and msg.topic.endswith("/teach"):
            msg.ack()  # a cleared retained taught state: keep what we have
            return
        try:
            ctl = decode_output(msg.topic, msg.payload)
            stream = parse(msg.topic).stream
            if isinstance(ctl, FeedbackControl | TeachState) and stream is not None:
                self._teach(msg, ctl, stream)
                return
            if not isinstance(ctl, ThresholdControl) or stream is None:
                raise Rejected("bad_topic", "not a threshold control topic")
            change = self.pipeline.current.thresholds.apply(stream, ctl)
        except (Rejected, ThresholdError, TeachError, TopicError) as err:
            self.out.dead(msg, Rejected(err.reason, err.detail))
            return
        log.info(
            "thresholds of %s now defect %.4g novelty %.4g (by %s)",
            stream.key,
            change.defect_threshold,
            change.novelty_threshold,
            change.actor,
        )
        pending = self.acks.open(msg.ack, change.key)
        self.out.publish(threshold_change_topic(stream), change, pending)
        pending.seal()

    def _teach(self, msg: Inbound, ctl: FeedbackControl | TeachState, stream: StreamRef) -> None:
        """Operators' feedback and taught states (edge/teachpath.py)."""
        if isinstance(ctl, TeachState):
            self.teaching.adopt(msg, ctl, stream)
        else:
            self.teaching.control(msg, ctl, stream)

    def on_assignment(self, msg: Inbound) -> None:
        if not msg.payload:
            msg.ack()  # a cleared retained assignment: keep what we have
            return
        try:
            got = decode_output(msg.topic, msg.payload)
            if not isinstance(got, Assignment):
                raise Rejected("bad_topic", "not an assignment topic")
            decode_assignment(got, self.worker)
        except (Rejected, TopicError) as err:
            self.out.dead(msg, Rejected(err.reason, err.detail))
            return
        # A live delivery is a fresh grant; a retained copy (sent at subscribe time, e.g. after
        # a restart) may be old, and its resume points must not open take-over gaps.
        self._apply(got, fresh=not msg.retain)
        msg.ack()

    def _apply(self, got: Assignment, remember: bool = True, fresh: bool = False) -> None:
        try:
            diff = self.state.apply(got)
        except StaleAssignment as exc:
            log.info("assignment ignored: %s", exc)
            return
        if remember:
            save_assignment(self._assignment_file, got)
        self.sensors.set_epoch(diff.epoch)
        if fresh and diff.resume:
            self.gaps.take_over(diff.resume)
            log.info("taking over %s after the seqs accounted for", diff.resume)
        self.subs.change(diff)
        if diff.added or diff.removed:  # tell the dispatcher at once what is served now
            self.heartbeat.now()

    def _on_removed(self, stream: StreamRef, epoch: int) -> None:
        """A stream left this worker: queued frames are handed over (acked, no record: the
        new owner receives them or covers them with its take-over gap), state goes. Seq
        ranges it still awaited are reported now: the new owner resumes after later seqs."""
        self.gaps.release(stream)
        if stream.kind is Kind.CAMERA:
            dropped = self.batcher.drop_camera(stream.key)
            for job in dropped:
                self.metrics.frames.labels("unassigned").inc()
                job.pending.seal()
            if dropped:
                log.info("%d queued frames of %s handed over", len(dropped), stream.key)
            self.pipeline.forget(stream.key)
        else:
            for batch, pendings in self.sensors.forget(stream.key):
                self.out.readings(batch, pendings)

    # ---- periodic work ---------------------------------------------------------------------

    def flush_readings(self, force: bool = False) -> None:
        for batch, pendings in self.sensors.due(force):
            self.out.readings(batch, pendings)
