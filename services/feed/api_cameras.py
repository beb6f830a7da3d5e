"""Camera endpoints: runtime threshold changes (over MQTT) and evidence images of frames."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from broker import topics
from broker.messages import ThresholdControl
from broker.topics import Kind, StreamRef, TopicError
from services.feed.auth import Operator, Reader
from services.feed.deps import engine_of, image_response, publish
from services.feed.errors import ApiError
from services.store import queries

router = APIRouter(prefix="/api", tags=["cameras"])


class ThresholdBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    defect_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    novelty_threshold: float | None = Field(default=None, gt=0.0, le=1e6)
    reason: str = Field(default="", max_length=500)


def camera_ref(camera: str) -> StreamRef:
    """``site/line/station/cam`` or the full ``site/line/station/camera/cam`` key."""
    try:
        ref = StreamRef.parse_key(camera)
    except TopicError as exc:
        raise ApiError(422, exc.reason, exc.detail) from None
    if ref.kind is not Kind.CAMERA:
        raise ApiError(422, "bad_stream", f"{camera[:120]!r} is not a camera")
    return ref


@router.put("/cameras/{camera:path}/thresholds", status_code=202)
def set_thresholds(
    request: Request, who: Operator, body: ThresholdBody, camera: str = PathParam(max_length=400)
) -> dict[str, Any]:
    """Ask the worker running this camera to change its thresholds; it applies the change
    and announces a ``ThresholdChange`` (stored, listed by GET)."""
    ref = camera_ref(camera)
    if body.defect_threshold is None and body.novelty_threshold is None:
        raise ApiError(422, "invalid", "give defect_threshold and/or novelty_threshold")
    msg = ThresholdControl(
        stream=ref.key,
        defect_threshold=body.defect_threshold,
        novelty_threshold=body.novelty_threshold,
        actor=who.name,
        reason=body.reason,
        request_id=f"feed-{uuid.uuid4().hex}",
    )
    publish(request, topics.threshold_control_topic(ref), msg)
    request.app.state.metrics.actions.labels("thresholds").inc()
    return {
        "request_id": msg.request_id,
        "stream": ref.key,
        "status": "requested",
        "defect_threshold": msg.defect_threshold,
        "novelty_threshold": msg.novelty_threshold,
        "actor": who.name,
    }


@router.get("/cameras/{camera:path}/thresholds")
def threshold_history(
    request: Request, _who: Reader, camera: str = PathParam(max_length=400)
) -> dict[str, Any]:
    """Applied threshold changes of this camera, newest first."""
    ref = camera_ref(camera)
    with engine_of(request).connect() as conn:
        return {"stream": ref.key, "items": queries.threshold_history(conn, ref.key)}


@router.get("/frames/{frame_id}/image", response_class=Response)
def frame_image(
    request: Request, _who: Reader, frame_id: int = PathParam(ge=1, le=2**62)
) -> Response:
    """The evidence thumbnail (JPEG) kept for a defective or anomalous frame."""
    with engine_of(request).connect() as conn:
        found = queries.image_for_frame(conn, frame_id)
    if found is None:
        raise ApiError(404, "not_found", f"frame {frame_id} has no evidence image")
    return image_response(found[0], f"frame {frame_id}")
