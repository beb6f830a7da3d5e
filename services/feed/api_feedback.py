"""Operators' feedback on frames and alerts, and the cameras' taught states (docs/model.md,
"Teaching"): recorded in SQL with the actor and time, sent to the worker running the camera."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker import topics
from broker.teach_messages import FeedbackControl, TeachTarget
from broker.topics import StreamRef
from services.feed.api_cameras import camera_ref
from services.feed.auth import Operator, Reader
from services.feed.deps import ID_PATTERN, engine_of, image_response, publish, writer_of
from services.feed.errors import ApiError
from services.store import teach_queries as tq

router = APIRouter(prefix="/api", tags=["feedback"])
FeedbackId = PathParam(ge=1, le=2**62)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    frame_id: int | None = Field(default=None, ge=1, le=2**62)
    alert_id: int | None = Field(default=None, ge=1, le=2**62)
    label: Literal["not_a_defect", "confirmed", "unsure"]
    family: str | None = Field(default=None, pattern=ID_PATTERN)  # confirmed: existing or new
    note: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _one_target(self) -> FeedbackBody:
        if (self.frame_id is None) == (self.alert_id is None):
            raise ValueError("give frame_id or alert_id")
        if self.family is not None and self.label != "confirmed":
            raise ValueError("a family goes with label 'confirmed' only")
        return self


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, ge=1, le=2**62)  # the change undone; default last


def _send(request: Request, ref: StreamRef, ctl: FeedbackControl) -> None:
    publish(request, topics.feedback_control_topic(ref), ctl)


@router.post("/feedback", status_code=202)
def give_feedback(request: Request, who: Operator, body: FeedbackBody) -> dict[str, Any]:
    """Mark a frame (or an alert's latest frame); the worker answers asynchronously (GET)."""
    if request.app.state.transport is None:
        raise ApiError(503, "bus_unavailable", "this feed runs without MQTT (feed_mqtt=false)")
    now = datetime.now(UTC)
    request_id = f"fb-{uuid.uuid4().hex}"
    # read, then write in a transaction of its own: on SQLite a read transaction that turns
    # into a write fails at once (no busy wait) when the store wrote in between
    with engine_of(request).connect() as conn:
        try:
            frame = tq.frame_of(conn, frame_id=body.frame_id, alert_id=body.alert_id)
        except tq.FrameNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
    ref = camera_ref(frame["stream"])
    with writer_of(request).begin() as conn:
        fid = tq.add_feedback(
            conn,
            {
                "request_id": request_id,
                "stream": ref.key,
                "frame_key": frame["frame_key"],
                "frame_id": frame["frame_id"],
                "alert_id": frame["alert_id"],
                "label": body.label,
                "family": body.family,
                "note": body.note,
                "actor": who.name,
                "created_at": now,
            },
        )
    ctl = FeedbackControl(
        request_id=request_id,
        stream=ref.key,
        action="feedback",
        feedback_id=fid,
        frame_key=frame["frame_key"],
        label=body.label,
        actor=who.name,
        ts=now,
    )
    _send(request, ref, ctl)
    request.app.state.metrics.actions.labels(f"feedback_{body.label}").inc()
    return {"id": fid, "status": "requested", "stream": ref.key, "frame_key": frame["frame_key"]}


@router.get("/feedback")
def list_feedback(
    request: Request, _who: Reader, camera: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """Feedback, newest first, with the worker's answer; ``camera`` narrows to one camera."""
    stream = camera_ref(camera).key if camera else None
    with engine_of(request).connect() as conn:
        items = tq.list_feedback(conn, stream=stream, limit=max(1, min(limit, 500)))
    return {"items": [_public(i) for i in items]}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    item["image_url"] = f"/api/feedback/{item['id']}/image" if item["has_image"] else None
    return item


@router.get("/feedback/{feedback_id}")
def get_feedback(request: Request, _who: Reader, feedback_id: int = FeedbackId) -> dict[str, Any]:
    with engine_of(request).connect() as conn:
        item = tq.feedback(conn, feedback_id)
    if item is None:
        raise ApiError(404, "not_found", f"no feedback {feedback_id}")
    return _public(item)


@router.get("/feedback/{feedback_id}/image", response_class=Response)
def feedback_image(request: Request, _who: Reader, feedback_id: int = FeedbackId) -> Response:
    """The frame at model-input size (PNG), while retention keeps it."""
    with engine_of(request).connect() as conn:
        data = tq.feedback_image(conn, feedback_id)
    if data is None:
        raise ApiError(404, "not_found", f"feedback {feedback_id} has no kept frame")
    return image_response(data, f"feedback {feedback_id}")


@router.post("/feedback/{feedback_id}/approve", status_code=202)
def approve(request: Request, who: Operator, feedback_id: int = FeedbackId) -> dict[str, Any]:
    """A second operator releases a held ``not_a_defect``."""
    now = datetime.now(UTC)
    with engine_of(request).connect() as conn:  # read, then write (see give_feedback)
        item = tq.feedback(conn, feedback_id)
    if item is None:
        raise ApiError(404, "not_found", f"no feedback {feedback_id}")
    if item["status"] != "held":
        raise ApiError(409, "not_held", f"feedback {feedback_id} is {item['status']}")
    if item["actor"] == who.name:
        raise ApiError(409, "second_operator", "a held mark needs another operator")
    with writer_of(request).begin() as conn:
        tq.approve(conn, feedback_id, who.name, now)
    ref = camera_ref(item["stream"])
    ctl = FeedbackControl(
        request_id=f"{item['request_id']}-approve",
        stream=ref.key,
        action="approve",
        feedback_id=feedback_id,
        frame_key=item["frame_key"],
        label=item["label"],
        actor=who.name,
        ts=now,
    )
    _send(request, ref, ctl)
    return {"id": feedback_id, "status": "approval_requested", "approved_by": who.name}


@router.get("/cameras/{camera:path}/teach")
def teach_history(
    request: Request, _who: Reader, camera: str = PathParam(max_length=400)
) -> dict[str, Any]:
    """The camera's taught-state changes, newest first, thresholds before and after."""
    ref = camera_ref(camera)
    with engine_of(request).connect() as conn:
        return {"stream": ref.key, "items": tq.teach_history(conn, ref.key)}


@router.post("/cameras/{camera:path}/teach/rollback", status_code=202)
def rollback(
    request: Request,
    who: Operator,
    body: RollbackBody | None = None,
    camera: str = PathParam(max_length=400),
) -> dict[str, Any]:
    """Undo one change (the latest by default): the state before it is restored exactly."""
    ref = camera_ref(camera)
    version = body.version if body else None
    with engine_of(request).connect() as conn:
        change = tq.teach_change(conn, ref.key, version)
    if change is None:
        raise ApiError(404, "not_found", f"camera {ref.key} has no taught change {version or ''}")
    target = TeachTarget(
        version=change["previous_version"],
        map_shape=(change["map_h"], change["map_w"]),
        novelty_threshold=change["previous_novelty_threshold"],
        allowance=bytes(change["previous_allowance"]),
        confirmed=bytes(change["previous_confirmed"]),
        confirmed_keys=tuple(change["previous_confirmed_keys"]),
    )
    ctl = FeedbackControl(
        request_id=f"rb-{uuid.uuid4().hex}",
        stream=ref.key,
        action="rollback",
        actor=who.name,
        target=target,
        undo_version=change["version"],
        ts=datetime.now(UTC),
    )
    _send(request, ref, ctl)
    request.app.state.metrics.actions.labels("teach_rollback").inc()
    return {"stream": ref.key, "undone": change["version"], "restores": target.version}
