"""One valid sample of every output message (tests/unit/test_codecs.py round-trips them all)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
from codec_kit import CAM, JPEG, T0, TEMP
from PIL import Image

from broker import embeddings, topics
from broker.messages import (
    Alert,
    Assignment,
    DeadLetter,
    DispatchDecision,
    FamilyControl,
    FamilyUpdate,
    Features,
    FrameFamily,
    Gap,
    Msg,
    ReadingsBatch,
    SensorAnomaly,
    StoredReading,
    ThresholdChange,
    ThresholdControl,
    Verdict,
    WorkerStatus,
)
from broker.teach_messages import (
    FeedbackControl,
    FeedbackResult,
    HistoryFrame,
    TeachState,
    TeachTarget,
)


def output_samples() -> list[tuple[str, Msg]]:
    """One instance of every JSON output message, on its topic."""
    emb = embeddings.embedding_to_bytes(np.linspace(-1, 1, 16, dtype=np.float32))
    return [
        (
            topics.verdict_topic(CAM),
            Verdict(
                stream=CAM.key,
                key="k1",
                seq=5,
                epoch=2,
                worker="w1",
                captured_at=T0,
                received_at=T0,
                decided_at=T0 + timedelta(milliseconds=7),
                verdict="defect",
                defect_score=0.93,
                novelty_score=1.5e-3,
                predicted_class="scratch",
                model_version="resnet50-int8@abc",
                latency_ms=6.25,
                part="PN-1.2",
            ),
        ),
        (
            topics.features_topic(CAM),
            Features(
                stream=CAM.key,
                key="k1",
                epoch=1,
                worker="w1",
                ts=T0,
                dim=16,
                embedding=emb,
                verdict="anomaly",
                predicted_class="good",
            ),
        ),
        (
            topics.frame_family_topic(CAM),
            FrameFamily(
                stream=CAM.key, key="k1", family="fam-7", distance=0.25, is_new=True, ts=T0
            ),
        ),
        (
            topics.family_topic("fam-7"),
            FamilyUpdate(
                family="fam-7",
                name="scratch near edge",
                event="grew",
                size=12,
                first_seen=T0,
                last_seen=T0,
                rate_per_hour=3.5,
                actor="op1",
                ts=T0,
            ),
        ),
        (
            topics.alert_topic("plant1", "line-2", "st_3"),
            Alert(
                event_id="e1",
                kind="defect",
                severity="major",
                site="plant1",
                line="line-2",
                station="st_3",
                stream=CAM.key,
                frame_key="k1",
                message="defect: scratch 0.93",
                thumbnail=JPEG[:500] + b"\x00\xff",
                worker="w1",
                epoch=3,
                ts=T0,
            ),
        ),
        (
            topics.sensor_anomaly_topic(TEMP),
            SensorAnomaly(
                stream=TEMP.key,
                key="t#0:9",
                seq=9,
                ts=T0,
                value=99.5,
                kind="zscore",
                score=6.1,
                detail="z=6.1",
                worker="w1",
                epoch=1,
            ),
        ),
        (
            topics.readings_topic(TEMP),
            ReadingsBatch(
                stream=TEMP.key,
                worker="w1",
                epoch=1,
                readings=(
                    StoredReading(key="a", seq=1, ts=T0, value=1.5, unit="C"),
                    StoredReading(key="b", ts=T0, value=-2.0),
                ),
            ),
        ),
        (
            topics.gap_topic(CAM),
            Gap(
                key="g1",
                stream=CAM.key,
                reason="missing",
                from_seq=3,
                to_seq=4,
                count=2,
                worker="w1",
                ts=T0,
            ),
        ),
        (topics.gap_topic(TEMP), Gap(key="g2", stream=TEMP.key, reason="shed", worker="w1", ts=T0)),
        (
            topics.worker_status_topic("w1"),
            WorkerStatus(
                worker="w1",
                role="edge",
                state="online",
                counter=4,
                ts=T0,
                host="h",
                pid=12,
                capacity_fps=120.5,
                labels={"zone": "a"},
                streams=(CAM.key,),
                epoch=2,
            ),
        ),
        (
            topics.assignment_topic("w1"),
            Assignment(
                worker="w1",
                epoch=9,
                streams=(CAM.key,),
                rates={CAM.key: 0.5},
                dispatcher="d1",
                ts=T0,
            ),
        ),
        (
            topics.threshold_control_topic(CAM),
            ThresholdControl(
                stream=CAM.key,
                defect_threshold=0.8,
                actor="op1",
                reason="too many alarms",
                request_id="r1",
            ),
        ),
        (
            topics.threshold_change_topic(CAM),
            ThresholdChange(
                key="c1",
                stream=CAM.key,
                defect_threshold=0.8,
                novelty_threshold=2.0,
                previous_defect_threshold=0.7,
                actor="op1",
                worker="w1",
                ts=T0,
            ),
        ),
        (
            topics.dead_letter_topic("edge-1"),
            DeadLetter(
                key="d1",
                component="edge-1",
                topic="lw/v1/x",
                reason="bad_json",
                detail="x",
                payload_size=3,
                payload_head=b"\x00{\xff",
                ts=T0,
            ),
        ),
        (
            topics.dispatch_decision_topic(),
            DispatchDecision(
                decision_id="x1",
                dispatcher="d1",
                trigger="worker_dead",
                before={CAM.key: "w1"},
                after={CAM.key: "w2"},
                cost_before=2.0,
                cost_after=1.5,
                solve_ms=3.0,
                optimal=True,
                epochs={"w2": 4},
                ts=T0,
            ),
        ),
        (
            topics.family_control_topic(),
            FamilyControl(request_id="r2", op="merge", family="F2", into="F1", actor="op1", ts=T0),
        ),
        *teach_samples(),
        history_sample(),
    ]


def history_sample() -> tuple[str, Msg]:
    """A worker's sampled good frame, kept for retraining (contract, "History frames")."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    msg = HistoryFrame(
        key=f"{CAM.key}:1:7", stream=CAM.key, image=buf.getvalue(), worker="w1", ts=T0
    )
    return topics.history_frame_topic(CAM), msg


def teach_samples() -> list[tuple[str, Msg]]:
    """Feedback to a worker, its answer, and a camera's taught state (contract 9.1)."""
    allowance = np.linspace(0, 2, 4, dtype="<f4").tobytes()
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    target = TeachTarget(version=1, map_shape=(2, 2), allowance=allowance)
    return [
        (
            topics.feedback_control_topic(CAM),
            FeedbackControl(
                request_id="r3",
                stream=CAM.key,
                action="rollback",
                actor="op1",
                target=target,
                undo_version=2,
                ts=T0,
            ),
        ),
        (
            topics.feedback_result_topic(CAM),
            FeedbackResult(
                key="fb:1:feedback",
                stream=CAM.key,
                feedback_id=1,
                action="feedback",
                status="applied",
                image=buf.getvalue(),
                version=2,
                worker="w1",
                ts=T0,
            ),
        ),
        (
            topics.teach_topic(CAM),
            TeachState(
                key=f"{CAM.key}#teach:1:r3",
                stream=CAM.key,
                version=1,
                previous_version=0,
                action="teach",
                feedback_id=1,
                actor="op1",
                model_version="m1",
                map_shape=(2, 2),
                novelty_threshold=1.5,
                allowance=allowance,
                confirmed=np.ones(4, "<f2").tobytes(),
                confirmed_keys=("k1",),
                worker="w1",
                ts=T0,
            ),
        ),
    ]


SAMPLES = output_samples()
