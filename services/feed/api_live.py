"""Live views of the page: camera tiles, flagged frames, station rates, sensor sparklines,
and the family gallery (reads; pictures at ``/api/frames/{id}/image``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.feed.auth import Reader
from services.feed.deps import ID_PATTERN, engine_of
from services.store import live

router = APIRouter(prefix="/api/live", tags=["live"])

Window = Annotated[float, Query(ge=60, le=86_400, description="seconds back from now")]


def _image(frame: dict[str, Any] | None) -> None:
    if frame is not None:
        frame["image"] = f"/api/frames/{frame['id']}/image" if frame.pop("has_image", 1) else None


@router.get("/cameras")
def cameras(request: Request, _who: Reader, window_s: Window = 600) -> dict[str, Any]:
    """One tile per camera active in the window: frames/min, defect rate, the latest verdict
    and the latest flagged frame with its picture (the anomaly map drawn on it)."""
    with engine_of(request).connect() as conn:
        items = live.camera_tiles(conn, window_s)
    for tile in items:
        _image(tile["latest"])
        _image(tile["last_flagged"])
    return {"window_s": window_s, "items": items}


@router.get("/flagged")
def flagged(
    request: Request,
    _who: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> dict[str, Any]:
    """The newest defective or anomalous frames that have a picture, newest first."""
    with engine_of(request).connect() as conn:
        items = live.flagged_frames(conn, limit, site)
    for frame in items:
        frame["image"] = f"/api/frames/{frame['id']}/image"
    return {"items": items}


@router.get("/rates")
def rates(
    request: Request,
    _who: Reader,
    window_s: Window = 3600,
    bucket_s: Annotated[int, Query(ge=10, le=3600)] = 60,
) -> dict[str, Any]:
    """Per station: frames and flagged frames per slot (``t`` = slot start, epoch s)."""
    with engine_of(request).connect() as conn:
        items = live.station_rates(conn, window_s, bucket_s)
    return {"window_s": window_s, "bucket_s": bucket_s, "items": items}


@router.get("/sensors")
def sensors(
    request: Request,
    _who: Reader,
    window_s: Window = 600,
    bucket_s: Annotated[int, Query(ge=1, le=3600)] = 10,
) -> dict[str, Any]:
    """Per sensor: ``[t, mean, min, max]`` per slot, the latest value, anomalies raised."""
    with engine_of(request).connect() as conn:
        items = live.sensor_series(conn, window_s, bucket_s)
    return {"window_s": window_s, "bucket_s": bucket_s, "items": items}


@router.get("/families")
def families(
    request: Request, _who: Reader, samples: Annotated[int, Query(ge=1, le=24)] = 6
) -> dict[str, Any]:
    """Active families, largest first: size, first/last seen, cameras, exemplar pictures."""
    with engine_of(request).connect() as conn:
        items = live.family_gallery(conn, samples)
    for fam in items:
        fam["sample_images"] = [f"/api/frames/{i}/image" for i in fam["sample_frames"]]
    return {"items": items}
