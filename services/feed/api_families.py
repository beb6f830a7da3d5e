"""Defect family endpoints: gallery data, and operator rename / merge / split requests."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from broker import topics
from broker.messages import FamilyControl, utcnow
from services.feed.auth import Operator, Reader
from services.feed.deps import ID_PATTERN, engine_of, publish, writer_of
from services.feed.errors import ApiError
from services.store import queries

router = APIRouter(prefix="/api", tags=["families"])


class FamilyPatch(BaseModel):
    """Exactly one of: ``name`` (rename), ``merge_into`` (fold into another), ``split``."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=128)
    merge_into: str | None = Field(default=None, pattern=ID_PATTERN)
    split: int | None = Field(default=None, ge=2, le=10)


@router.get("/families")
def list_families(request: Request, _who: Reader, include_merged: bool = False) -> dict[str, Any]:
    """Families, largest first, each with evidence frame ids (``/api/frames/{id}/image``)."""
    with engine_of(request).connect() as conn:
        items = queries.list_families(conn, include_merged=include_merged)
    for fam in items:
        fam["sample_images"] = [f"/api/frames/{i}/image" for i in fam["sample_frames"]]
    return {"items": items}


def _check(conn: Any, family: str, body: FamilyPatch) -> tuple[str, dict[str, Any]]:
    chosen = [k for k in ("name", "merge_into", "split") if getattr(body, k) is not None]
    if len(chosen) != 1:
        raise ApiError(422, "invalid", "give exactly one of name, merge_into, split")
    current = queries.get_family(conn, family)
    if current is None:
        raise ApiError(404, "not_found", f"no family {family}")
    if current["status"] != "active":
        raise ApiError(409, "conflict", f"{family} was merged into {current['merged_into']}")
    if body.name is not None:
        name = body.name.strip()
        if not name or not name.isprintable():
            raise ApiError(422, "invalid", "a family name is printable text")
        return "rename", {"name": name}
    if body.merge_into is not None:
        target = queries.get_family(conn, body.merge_into)
        if target is None:
            raise ApiError(404, "not_found", f"no family {body.merge_into}")
        if body.merge_into == family or target["status"] != "active":
            raise ApiError(409, "conflict", f"cannot merge {family} into {body.merge_into}")
        return "merge", {"into": body.merge_into}
    return "split", {"parts": body.split}


@router.patch("/families/{family}")
def patch_family(
    request: Request, who: Operator, body: FamilyPatch, family: str = PathParam(pattern=ID_PATTERN)
) -> dict[str, Any]:
    """Record the change in SQL and ask the clustering service to apply it (over MQTT)."""
    request_id = f"feed-{uuid.uuid4().hex}"
    with writer_of(request).begin() as conn:
        op, args = _check(conn, family, body)
        queries.record_curation(
            conn, family, op, who.name, request_id, name=args.get("name"), into=args.get("into")
        )
        msg = FamilyControl(
            request_id=request_id,
            op=op,  # type: ignore[arg-type]
            family=family,
            actor=who.name,
            ts=utcnow(),
            **args,
        )
        publish(request, topics.family_control_topic(), msg)  # failure rolls the SQL back
        after = queries.get_family(conn, family)
    request.app.state.metrics.actions.labels(f"family_{op}").inc()
    return {"request_id": request_id, "op": op, "family": after, **args}
