"""History frames on the wire and in SQL: the codec, the store path (idempotent, bad payloads
dead-lettered), their retention budget, and the history a retrain reads, split by time."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for
from history_kit import Stored, png, store_history
from PIL import Image
from sqlalchemy import Engine, func, select
from store_support import T0, cam, migrated_sqlite

from broker import topics
from broker.codecs import Rejected, decode_output, encode
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.teach_messages import HistoryFrame
from services.store import schema as s
from services.store import schema_teach as st
from services.store.engine import make_engine
from services.store.history_export import MANIFEST, export_history, split_by_time
from services.store.history_queries import HistoryError, HistoryItem, history_items
from services.store.retention import Retention
from services.store.settings import StoreSettings
from services.store.writer import StoreWriter

pytestmark = pytest.mark.unit
CAM = cam()


def _px(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value % 256, np.uint8)


def _sample(i: int, image: bytes | None = None) -> HistoryFrame:
    return HistoryFrame(
        key=f"{CAM.key}#0:{i}",
        stream=CAM.key,
        image=image or png(_px(i)),
        worker="W1",
        ts=T0 + timedelta(minutes=i),
    )


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_sqlite(tmp_path))


def test_codec_accepts_a_png_and_rejects_anything_else() -> None:
    t = topics.history_frame_topic(CAM)
    assert topics.parse(t).route is topics.Route.HISTORY_FRAME
    assert decode_output(t, encode(_sample(1))) == _sample(1)
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    cases = {
        "bad_image": encode(_sample(1, jpeg.getvalue())),
        "bad_schema": json.dumps({"key": "k", "stream": CAM.key, "worker": "W1"}).encode(),
    }
    for reason, payload in cases.items():
        with pytest.raises(Rejected) as err:
            decode_output(t, payload)
        assert err.value.reason == reason
    other = topics.history_frame_topic(cam(name="cam2"))
    with pytest.raises(Rejected):  # the payload's stream is not the topic's
        decode_output(other, encode(_sample(1)))


def test_store_keeps_each_sample_once_and_dead_letters_bad_ones(engine: Engine) -> None:
    hub = LoopbackHub()
    sub, pub = LoopbackTransport(hub, "store"), LoopbackTransport(hub, "edge")
    writer = StoreWriter(engine, sub)
    for x in (sub, pub, writer):
        x.start()
    try:
        t = topics.history_frame_topic(CAM)
        for i in (*range(5), 0, 1):  # two redelivered
            pub.publish(t, encode(_sample(i)))
        pub.publish(t, b'{"key": "x", "image": "bm90IGEgcG5n"}')
        wait_for(lambda: sub.stats()["acked"] == 8, 10, what="8 deliveries acked")
    finally:
        writer.stop()
        sub.stop()
        pub.stop()
    h = st.T_HISTORY_FRAMES
    with engine.connect() as conn:
        rows = conn.execute(select(h.c.frame_key, h.c.image_bytes, h.c.image)).all()
        dead: list[str] = list(conn.execute(select(s.T_DEAD_LETTERS.c.reason)).scalars())
    assert sorted(r.frame_key for r in rows) == sorted(f"{CAM.key}#0:{i}" for i in range(5))
    assert all(r.image_bytes == len(r.image) > 0 for r in rows)
    assert dead == ["bad_schema"]


def test_oldest_samples_are_deleted_beyond_the_budget(engine: Engine) -> None:
    store_history(
        engine, CAM, [Stored(f"k{i}", T0 + timedelta(minutes=i), _px(i)) for i in range(5)]
    )
    h = st.T_HISTORY_FRAMES
    with engine.connect() as conn:
        sizes: dict[str, int] = dict(conn.execute(select(h.c.frame_key, h.c.image_bytes)).all())
    total = sum(sizes.values())
    budget = total - sizes["k0"] - sizes["k1"] // 2  # k0 and k1 must go
    cfg = StoreSettings(retention_history_image_budget_bytes=budget)
    dry = Retention(engine, cfg).run(dry_run=True).history_frames
    assert dry == {"before": total, "freed": sizes["k0"] + sizes["k1"], "images": 2}
    assert Retention(engine, cfg).run().as_dict()["history_frames"] == dry
    with engine.connect() as conn:
        left: list[str] = list(conn.execute(select(h.c.frame_key)).scalars())
        n = conn.execute(select(func.count()).select_from(h)).scalar_one()
    assert sorted(left) == ["k2", "k3", "k4"] and n == 3


def test_history_labels_samples_and_marks(engine: Engine) -> None:
    t = [T0 + timedelta(minutes=i) for i in range(8)]
    store_history(
        engine,
        CAM,
        [
            Stored("g1", t[0], _px(1)),
            Stored("g2", t[1], _px(2)),
            Stored("d1", t[2], _px(3), "confirmed", "scratch"),
            Stored("n1", t[3], _px(4), "not_a_defect"),
            Stored("u1", t[4], _px(5), "unsure"),
            Stored("d2", t[5], _px(6), "not_a_defect"),
            Stored("d2", t[6], _px(6), "confirmed", "dent"),  # re-marked: the latest counts
            Stored("g2", t[7], _px(2), "confirmed", "dent"),  # a sample an operator marked
            Stored("g9", t[7], _px(7)),
            Stored("g9", t[7], _px(7), "confirmed", "scratch", kept=False),  # missed defect
            Stored("x1", t[7], _px(8), "confirmed", "dent", kept=False),  # no image anywhere
        ],
    )
    other = cam(name="cam2")
    store_history(engine, other, [Stored("o1", t[0], _px(9))])
    got = {i.key: i.label for i in history_items(engine, camera=CAM.key)}
    assert got == {
        "g1": "good",
        "g2": "dent",
        "d1": "scratch",
        "n1": "good",
        "d2": "dent",
        "g9": "scratch",
    }
    line = history_items(engine, line="s1/L1")
    assert {i.key for i in line} == set(got) | {"o1"}
    recent = [i.key for i in history_items(engine, camera=CAM.key, since=t[3])]
    assert recent == ["n1", "d2", "g9"]  # g2 was seen at t[1] (its sample), marked later
    with pytest.raises(HistoryError, match="exactly one"):
        history_items(engine)
    with pytest.raises(HistoryError, match="SITE/LINE"):
        history_items(engine, line="s1")
    with pytest.raises(HistoryError, match="camera stream key"):
        history_items(engine, camera="cam1")


def _item(key: str, label: str, minute: int) -> HistoryItem:
    return HistoryItem(key, CAM.key, label, T0 + timedelta(minutes=minute), b"", "sample")


def test_split_holds_out_the_newest_of_each_kind() -> None:
    items = [_item(f"g{i}", "good", i) for i in range(8)]
    items += [_item(f"s{i}", "scratch", 100 - i) for i in range(4)]
    train, held = split_by_time(items, 0.25)
    assert {i.key for i in held} == {"g6", "g7", "s0"}
    for label in ("good", "scratch"):
        newest_trained = max(i.ts for i in train if i.label == label)
        assert newest_trained < min(i.ts for i in held if i.label == label)
    assert len(train) + len(held) == len(items)
    with pytest.raises(HistoryError):
        split_by_time(items, 1.0)


def test_export_writes_disjoint_splits_or_says_what_is_missing(
    engine: Engine, tmp_path: Path
) -> None:
    frames = [Stored(f"g{i}", T0 + timedelta(minutes=i), _px(i)) for i in range(24)]
    frames += [
        Stored(f"s{i}", T0 + timedelta(minutes=i), _px(100 + i), "confirmed", "scratch")
        for i in range(4)
    ]
    frames += [Stored("x0", T0, _px(200), "confirmed", "dent")]
    store_history(engine, CAM, frames[:10])
    with pytest.raises(HistoryError, match=r"10 good frames \(need 20.*no defect family"):
        export_history(engine, tmp_path / "t0", camera=CAM.key)
    store_history(engine, CAM, frames[10:])
    m = export_history(engine, tmp_path / "t1", camera=CAM.key)
    assert m["families"] == ["scratch"] and m["left_out_families"] == {"dent": 1}
    assert {k: v["count"] for k, v in m["heldout"].items()} == {"good": 6, "scratch": 1}
    trained = {k for rec in m["train"].values() for k in rec["files"].values()}
    held = {k for rec in m["heldout"].values() for k in rec["files"].values()}
    assert not trained & held and len(trained | held) == 28
    on_disk = {p.name for p in (tmp_path / "t1" / "train").rglob("*.png")}
    assert on_disk == {f for rec in m["train"].values() for f in rec["files"]}
    assert (tmp_path / "t1" / MANIFEST).is_file()
    with pytest.raises(HistoryError, match="not empty"):
        export_history(engine, tmp_path / "t1", camera=CAM.key)


def test_cli_names_what_history_is_missing(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.model_cli import main

    url = str(engine.url)
    store_history(
        engine, CAM, [Stored(f"g{i}", T0 + timedelta(minutes=i), _px(i)) for i in range(3)]
    )
    out = str(tmp_path / "cand")
    base = ["train", "--from-history", "--db-url", url, "--out", out]
    assert main(base) == 1
    assert "exactly one of --camera" in capsys.readouterr().err
    assert main([*base, "--camera", CAM.key]) == 1
    err = capsys.readouterr().err
    assert "too little history" in err and "3 good frames (need 20" in err
    assert main([*base, "--camera", CAM.key, "--data", str(tmp_path)]) == 1
    assert "exclude each other" in capsys.readouterr().err
    assert main([*base, "--camera", CAM.key, "--held-out", "crack"]) == 1
    assert "--held-out does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a time without a zone is refused by the parser
        main([*base, "--camera", CAM.key, "--since", "2026-03-02T06:00:00"])
    assert "has no time zone" in capsys.readouterr().err
    assert main(["train", "--profile", "test"]) == 1
    assert "name --data DIR" in capsys.readouterr().err
