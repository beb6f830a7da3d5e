"""The page's live views over HTTP on SQLite and the real Postgres: camera tiles, flagged
frames with their pictures, per-station rate series, sensor sparklines, the family gallery."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from _feedkit import Feed, jpeg, json_error, store

from broker.messages import (
    FamilyUpdate,
    FrameFamily,
    Msg,
    ReadingsBatch,
    SensorAnomaly,
    StoredReading,
    Verdict,
    utcnow,
)

pytestmark = pytest.mark.integration


def _verdict(feed: Feed, cam: str, n: int, verdict: str, ago_s: float) -> Verdict:
    at = utcnow() - timedelta(seconds=ago_s)
    stream = f"{feed.site}/L1/S{cam[-1]}/camera/{cam}"
    return Verdict(
        stream=stream,
        key=f"{stream}#0:{n}",
        seq=n,
        worker="W1",
        received_at=at,
        decided_at=at,
        verdict=verdict,  # type: ignore[arg-type]
        defect_score=0.9 if verdict != "ok" else 0.1,
        novelty_score=5.0 if verdict == "anomaly" else 0.5,
        predicted_class="scratch" if verdict == "defect" else "unknown",
        model_version="m1",
        latency_ms=5.0,
        part="gear",
    )


def _line(feed: Feed) -> list[Msg]:
    """Two cameras over the last 30 minutes: c1 flags every 5th frame (with evidence, the
    last ones in family F1), c2 never; one sensor with a reading every 30 s and an anomaly."""
    msgs: list[Msg] = []
    for n in range(60):
        ago = 1800 - n * 30
        bad = n % 5 == 4
        v = _verdict(feed, "c1", n, "defect" if bad else "ok", ago)
        msgs.append(v)
        msgs.append(_verdict(feed, "c2", n, "ok", ago))
        if bad:
            msgs.append(feed.alert(n, frame_key=v.key, stream=v.stream, thumbnail=jpeg()))
            if n > 40:
                ts = v.decided_at
                msgs.append(FrameFamily(stream=v.stream, key=v.key, family="F1", distance=0, ts=ts))
    now = utcnow()
    msgs.append(
        FamilyUpdate(
            family="F1",
            name="scratches",
            event="created",
            size=4,
            first_seen=now,
            last_seen=now,
            ts=now,
        )
    )
    sensor = f"{feed.site}/L1/S1/sensor/temp"
    readings = tuple(
        StoredReading(
            key=f"{sensor}#0:{i}",
            seq=i,
            ts=now - timedelta(seconds=300 - i * 30),
            value=20.0 + i,
            unit="C",
        )
        for i in range(10)
    )
    msgs.append(ReadingsBatch(stream=sensor, worker="W1", readings=readings))
    msgs.append(
        SensorAnomaly(
            stream=sensor,
            key=f"{sensor}#0:9",
            seq=9,
            ts=readings[-1].ts,
            value=29.0,
            kind="zscore",
            score=6.0,
            detail="spike",
            worker="W1",
        )
    )
    return msgs


def test_live_views(feed: Feed) -> None:
    store(feed.engine, _line(feed))
    with feed.client(feed.viewer) as c:
        tiles = {t["camera"]: t for t in c.get("/api/live/cameras?window_s=3600").json()["items"]}
        assert set(tiles) == {"c1", "c2"}
        c1, c2 = tiles["c1"], tiles["c2"]
        assert c1["frames"] == 60 and c1["defect_rate"] == pytest.approx(12 / 60)
        assert c1["frames_per_min"] == pytest.approx(2.0, rel=0.01)  # over the 30 min it ran
        assert c1["latest"]["seq"] == 59 and c1["latest"]["verdict"] == "defect"
        assert c1["latest"]["model_version"] == "m1" and c1["latest"]["part"] == "gear"
        assert c1["last_flagged"]["seq"] == 59 and c1["last_flagged"]["family"] == "F1"
        pic = c.get(c1["last_flagged"]["image"])
        assert pic.status_code == 200 and pic.content[:2] == b"\xff\xd8"
        assert c2["defect_rate"] == 0 and c2["last_flagged"] is None
        assert c2["latest"]["image"] is None
        # a shorter window counts only the frames in it (20 per camera: 15 s after the 20th)
        recent = c.get("/api/live/cameras?window_s=615").json()["items"]
        assert sorted(t["frames"] for t in recent) == [20, 20]

        flagged = c.get("/api/live/flagged?limit=5").json()["items"]
        assert [f["seq"] for f in flagged] == [59, 54, 49, 44, 39]
        assert all(f["image"] == f"/api/frames/{f['id']}/image" for f in flagged)
        assert c.get(f"/api/live/flagged?site={feed.site}x").json()["items"] == []

        rates = c.get("/api/live/rates?window_s=3600&bucket_s=60").json()
        series = {x["station"]: x["points"] for x in rates["items"]}
        assert set(series) == {"S1", "S2"}
        assert sum(p["frames"] for p in series["S1"]) == 60
        assert (
            sum(p["bad"] for p in series["S1"]) == 12 and sum(p["bad"] for p in series["S2"]) == 0
        )
        slots = [p["t"] for p in series["S1"]]
        assert slots == sorted(slots) and all(t % 60 == 0 for t in slots)
        assert 29 <= len(slots) <= 31  # one frame each 30 s over 30 minutes, one-minute slots

        sensors = c.get("/api/live/sensors?window_s=600&bucket_s=60").json()["items"]
        assert len(sensors) == 1
        temp: dict[str, Any] = sensors[0]
        assert temp["last"] == 29.0 and temp["unit"] == "C" and temp["anomalies"] == 1
        assert 5 <= len(temp["points"]) <= 6  # ten readings 30 s apart in one-minute slots
        assert all(lo <= mean <= hi for _, mean, lo, hi in temp["points"])

        gallery = c.get("/api/live/families?samples=3").json()["items"]
        assert [g["family"] for g in gallery] == ["F1"]
        assert len(gallery[0]["sample_images"]) == 3 and gallery[0]["size"] == 4
        assert gallery[0]["cameras"] == [f"{feed.site}/L1/S1/camera/c1"]

        json_error(c.get("/api/live/rates?bucket_s=1"), 422)
        json_error(c.get("/api/live/flagged?limit=1000"), 422)
    with feed.client() as anon:
        json_error(anon.get("/api/live/cameras"), 401)
