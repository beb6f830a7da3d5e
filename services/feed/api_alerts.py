"""Alert endpoints: list/filter, detail, acknowledge, assign, comment, resolve, bulk ack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.feed.auth import Operator, Reader
from services.feed.deps import ID_PATTERN, AlertId, engine_of, image_response, writer_of
from services.feed.errors import ApiError
from services.store import alert_ops as ops
from services.store import alerts as al
from services.store import queries

router = APIRouter(prefix="/api", tags=["alerts"])
IdQ = Annotated[str | None, Query(pattern=ID_PATTERN)]
MAX_AHEAD = timedelta(days=366)  # suppression windows: start and length bounds


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NoteBody(Strict):
    note: str | None = Field(default=None, max_length=2000)


class AssignBody(Strict):
    assignee: str | None = Field(max_length=128)  # null/"" unassigns
    note: str | None = Field(default=None, max_length=2000)


class CommentBody(Strict):
    text: str = Field(min_length=1, max_length=2000)


class BulkAckBody(Strict):
    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=500)
    note: str | None = Field(default=None, max_length=2000)


class SuppressionBody(Strict):
    line: str = Field(pattern=ID_PATTERN)
    site: str | None = Field(default=None, pattern=ID_PATTERN)
    station: str | None = Field(default=None, pattern=ID_PATTERN)
    kind: str | None = Field(default=None, max_length=32)
    starts_at: datetime | None = None  # default: now
    ends_at: datetime | None = None
    duration_min: float | None = Field(default=None, gt=0, le=60 * 24 * 31)
    reason: str = Field(min_length=1, max_length=1000)


def _utc(ts: datetime | None, name: str = "timestamp") -> datetime | None:
    """``ts`` in UTC; 400 for one that has no UTC form (year 1 at +14:00 is year 0)."""
    if ts is None:
        return None
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ApiError(400, "bad_request", f"{name} {ts.isoformat()} is out of range") from None


def _with_urls(alert: dict[str, Any]) -> dict[str, Any]:
    alert["image_url"] = f"/api/alerts/{alert['id']}/image" if alert.get("evidence_key") else None
    return alert


@router.get("/alerts")
def list_alerts(
    request: Request,
    _who: Reader,
    status: Literal["active", "acknowledged", "resolved"] | None = None,
    severity: Literal["critical", "major", "minor", "warning"] | None = None,
    site: IdQ = None,
    line: IdQ = None,
    station: IdQ = None,
    family: IdQ = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Alerts, newest activity first. ``since`` filters on last_seen (ISO 8601)."""
    f = queries.AlertFilter(
        status=status,
        severity=severity,
        site=site,
        line=line,
        station=station,
        family=family,
        kind=kind,
        since=_utc(since, "since"),
        limit=limit,
        offset=offset,
    )
    with engine_of(request).connect() as conn:
        items, total = queries.list_alerts(conn, f)
    return {
        "items": [_with_urls(a) for a in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/alerts/{alert_id}")
def get_alert(request: Request, alert_id: AlertId, _who: Reader) -> dict[str, Any]:
    with engine_of(request).connect() as conn:
        alert = queries.get_alert(conn, alert_id)
        if alert is None:
            raise ApiError(404, "not_found", f"no alert {alert_id}")
        alert["history"] = queries.alert_history(conn, alert_id)
    return _with_urls(alert)


@router.get("/alerts/{alert_id}/image", response_class=Response)
def alert_image(request: Request, alert_id: AlertId, _who: Reader) -> Response:
    with engine_of(request).connect() as conn:
        found = queries.image_for_alert(conn, alert_id)
    if found is None:
        raise ApiError(404, "not_found", f"alert {alert_id} has no evidence image")
    return image_response(found[0], f"alert {alert_id}")


def _act(request: Request, alert_id: int, action: str, actor: str, **kw: Any) -> dict[str, Any]:
    try:
        with writer_of(request).begin() as conn:
            alert = ops.act(conn, alert_id, action, actor, **kw)
    except al.AlertNotFound:
        raise ApiError(404, "not_found", f"no alert {alert_id}") from None
    except al.LifecycleError as exc:
        raise ApiError(409, exc.reason, exc.detail) from None
    request.app.state.metrics.actions.labels(action).inc()
    return _with_urls(queries.clean(alert))


@router.post("/alerts/bulk/ack")
def bulk_ack(request: Request, who: Operator, body: BulkAckBody) -> dict[str, Any]:
    """Acknowledge many alerts; the ones that cannot be acknowledged say why."""
    with writer_of(request).begin() as conn:
        done, skipped = ops.bulk_acknowledge(conn, body.ids, who.name, note=body.note)
    request.app.state.metrics.actions.labels("acknowledge").inc(len(done))
    return {"acknowledged": done, "skipped": {str(k): v for k, v in skipped.items()}}


@router.post("/alerts/{alert_id}/ack")
def acknowledge(
    request: Request, alert_id: AlertId, who: Operator, body: NoteBody | None = None
) -> dict[str, Any]:
    return _act(request, alert_id, "acknowledge", who.name, note=body.note if body else None)


@router.post("/alerts/{alert_id}/assign")
def assign(request: Request, alert_id: AlertId, who: Operator, body: AssignBody) -> dict[str, Any]:
    return _act(request, alert_id, "assign", who.name, assignee=body.assignee, note=body.note)


@router.post("/alerts/{alert_id}/comment")
def comment(
    request: Request, alert_id: AlertId, who: Operator, body: CommentBody
) -> dict[str, Any]:
    return _act(request, alert_id, "comment", who.name, note=body.text)


@router.post("/alerts/{alert_id}/resolve")
def resolve(
    request: Request, alert_id: AlertId, who: Operator, body: NoteBody | None = None
) -> dict[str, Any]:
    return _act(request, alert_id, "resolve", who.name, note=body.note if body else None)


@router.post("/suppressions", status_code=201)
def add_suppression(request: Request, who: Operator, body: SuppressionBody) -> dict[str, Any]:
    """A maintenance window: events of that line/station are kept but raise no alert."""
    now = datetime.now(UTC)
    starts = _utc(body.starts_at, "starts_at") or now
    if body.ends_at is not None and body.duration_min is not None:
        raise ApiError(422, "invalid", "give ends_at or duration_min, not both")
    if abs(starts - now) > MAX_AHEAD:
        raise ApiError(422, "invalid", "starts_at must be within a year of now")
    ends = _utc(body.ends_at, "ends_at") or (
        starts + timedelta(minutes=body.duration_min) if body.duration_min else None
    )
    if ends is None:
        raise ApiError(422, "invalid", "give ends_at or duration_min")
    if ends - starts > MAX_AHEAD:
        raise ApiError(422, "invalid", "a maintenance window lasts at most a year")
    window = al.Window(
        line=body.line,
        starts_at=starts,
        ends_at=ends,
        site=body.site,
        station=body.station,
        kind=body.kind,
    )
    try:
        with writer_of(request).begin() as conn:
            sup_id = ops.add_suppression(conn, window, reason=body.reason, actor=who.name)
    except al.LifecycleError as exc:
        raise ApiError(422, exc.reason, exc.detail) from None
    return {
        "id": sup_id,
        "line": body.line,
        "site": body.site,
        "station": body.station,
        "kind": body.kind,
        "starts_at": starts,
        "ends_at": ends,
        "reason": body.reason,
        "created_by": who.name,
    }


@router.get("/suppressions")
def list_suppressions(request: Request, _who: Reader, all: bool = False) -> dict[str, Any]:
    with engine_of(request).connect() as conn:
        return {"items": ops.list_suppressions(conn, current_only=not all)}


@router.delete("/suppressions/{sup_id}")
def cancel_suppression(request: Request, who: Operator, sup_id: AlertId) -> dict[str, Any]:
    with writer_of(request).begin() as conn:
        if not ops.cancel_suppression(conn, sup_id, who.name):
            raise ApiError(404, "not_found", f"no current suppression {sup_id}")
    return {"id": sup_id, "cancelled_by": who.name}
