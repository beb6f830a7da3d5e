"""Edge worker end to end: real Mosquitto, the real (fast-profile) model, the store, SQL."""

from __future__ import annotations

import io
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from edge_stack import Proc, Watcher, ensure_fast_model, linewatch, query
from helpers import wait_for

from broker.topics import StreamRef, frame_topic

pytestmark = pytest.mark.e2e

N_FRAMES = 200
SEED = 424242  # not a training seed: these parts are new to the model
PART = "bracket"  # the camera's product


@dataclass
class Stack:
    site: str
    worker: str
    db: Path
    model_dir: Path
    watcher: Watcher
    edge: Proc
    store: Proc
    url: str


@pytest.fixture(scope="module")
def fast_model() -> Path:
    return ensure_fast_model()


@pytest.fixture(scope="module")
def stack(
    mosquitto_url: str, fast_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import uuid

    tmp = tmp_path_factory.mktemp("edge-e2e")
    site = f"t{uuid.uuid4().hex[:10]}"
    worker = f"E{site}"
    db = tmp / "history.db"
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_CAMERA_QUEUE": "256",
        "LINEWATCH_TOTAL_QUEUE": "512",
    }
    linewatch("db", "upgrade", env=env)
    store = Proc("store", ["store"], env, tmp).start()
    edge = Proc(
        "edge",
        ["edge", "--id", worker, "--streams", f"{site}/L1/st1/c1", "--model-dir", str(fast_model)],
        env,
        tmp,
    ).start()
    watcher = Watcher(mosquitto_url, f"w-{site}").start([worker, f"store-{site}"])
    try:
        watcher.wait_online(worker)
        watcher.wait_online(f"store-{site}")
        yield Stack(site, worker, db, fast_model, watcher, edge, store, mosquitto_url)
    except BaseException:
        print(edge.tail(), store.tail())
        raise
    finally:
        watcher.stop()
        edge.stop()
        store.stop()


def render(n: int, size: int, part: str = PART) -> list[tuple[bytes, str]]:
    """``n`` PNG frames of held-out parts of one type (one camera, one product) and labels."""
    from edge.model.synthetic import iter_samples

    out = []
    for s in iter_samples(SEED, n, size=size, defect_fraction=0.5, part_types=(part,)):
        buf = io.BytesIO()
        s.image.save(buf, format="PNG")
        out.append((buf.getvalue(), s.label))
    return out


def offline_verdicts(model_dir: Path, frames: list[bytes]) -> list[tuple[str, float, float]]:
    """The same model files scored directly (no worker): (verdict, defect, novelty) per frame.

    Novelty is the variation score of the camera's model, chosen as the worker does
    (edge/variations.py): the best-fitting part type for each of the first frames, then the
    one that fits the first ``match_frames`` frames best.
    """
    import numpy as np

    from edge.model.runtime import OnnxModel
    from edge.model.variation_set import VariationSet
    from edge.preprocess import decode_image, preprocess_bytes, resize
    from edge.runner import ModelRunner
    from edge.scoring import Thresholds, decide
    from edge.variations import VariationBook

    runner = ModelRunner(OnnxModel(model_dir))
    card = runner.model.card
    book = VariationBook(VariationSet.load(model_dir, card.variation))
    th = Thresholds(card.thresholds.defect, card.thresholds.novelty)
    out: list[tuple[str, float, float]] = []
    for i in range(0, len(frames), 16):
        chunk = frames[i : i + 16]
        res = runner.run(preprocess_bytes(chunk, runner.spec))
        for j, data in enumerate(chunk):
            px = np.asarray(resize(decode_image(data), runner.spec.size), np.uint8)
            nov = book.score("c1", px)[0].score
            d = decide(
                float(res["defect_score"].reshape(-1)[j]),
                nov,
                res["class_scores"][j],
                card.class_names,
                th,
            )
            out.append((d.verdict, d.defect_score, nov))
    return out


def test_200_frames_verdicts_match_the_model(stack: Stack) -> None:
    from edge.model.card import load_card

    card = load_card(stack.model_dir)
    frames = render(N_FRAMES, int(card.recipe["config"]["render_size"]))
    cam = StreamRef.camera(stack.site, "L1", "st1", "c1")
    pubs = [stack.watcher.publish_frame(cam, data, seq) for seq, (data, _) in enumerate(frames)]
    assert all(p.wait(30) for p in pubs)
    wait_for(
        lambda: (
            query(stack.db, "SELECT count(*) FROM frames WHERE stream = ?", cam.key)[0][0]
            == N_FRAMES
        ),
        300,
        0.5,
        what="200 verdict rows",
    )
    rows = query(
        stack.db,
        "SELECT seq, verdict, defect_score, worker, model_version, novelty_score "
        "FROM frames WHERE stream = ? ORDER BY seq",
        cam.key,
    )
    assert [r[0] for r in rows] == list(range(N_FRAMES))
    assert {r[3] for r in rows} == {stack.worker}
    expected = offline_verdicts(stack.model_dir, [f for f, _ in frames])
    for (seq, verdict, score, _, _, nov), (want, want_score, want_nov) in zip(
        rows, expected, strict=True
    ):
        assert abs(score - want_score) < 1e-3, f"seq {seq}: defect score differs"
        assert abs(nov - want_nov) <= 1e-3 * max(1.0, abs(want_nov)), f"seq {seq}: novelty"
        near = abs(want_score - card.thresholds.defect) < 1e-3
        near = near or abs(want_nov - card.thresholds.novelty) < 1e-3 * card.thresholds.novelty
        assert verdict == want or near, f"seq {seq}: {verdict} != offline {want}"
    _check_quality(card.metrics["per_part"][PART], [lab for _, lab in frames], [r[1] for r in rows])
    _check_history_samples(stack, cam, rows)


def _check_history_samples(stack: Stack, cam: StreamRef, rows: list) -> None:
    """One in 50 ok frames (the default) reached the store as a PNG sample for retraining."""
    ok = [f"{cam.key}#0:{r[0]}" for r in rows if r[1] == "ok"]
    want = ok[::50]
    assert want, "no ok frame to sample"
    q = "SELECT frame_key, image_bytes FROM history_frames WHERE stream = ? ORDER BY frame_key"

    def stored() -> list | None:
        got = query(stack.db, q, cam.key)
        return got if len(got) == len(want) else None

    got = wait_for(stored, 60, 0.5, what=f"{len(want)} history samples")
    assert sorted(k for k, _ in got) == sorted(want) and all(b > 0 for _, b in got)


def _check_quality(metrics: dict, labels: list[str], verdicts: list[str]) -> None:
    """False alarms and detections agree with the card's held-out figures.

    The card measured ``good_fpr`` and ``per_family_recall`` on its own held-out set of
    ``n_test`` parts; both are binomial estimates, so the tolerance is 3.5 standard
    deviations of the difference of two proportions (with a floor for p near 0 or 1).
    """
    n_card = int(metrics["n_test"]) / 2
    good = [v for lab, v in zip(labels, verdicts, strict=True) if lab == "good"]
    bad = [(lab, v) for lab, v in zip(labels, verdicts, strict=True) if lab != "good"]
    fpr = sum(v != "ok" for v in good) / len(good)
    tpr = sum(v != "ok" for _, v in bad) / len(bad)
    recall = metrics["per_family_recall"]
    want_tpr = sum(float(recall.get(lab, 0.0)) for lab, _ in bad) / len(bad)
    for got, want, n in ((fpr, float(metrics["good_fpr"]), len(good)), (tpr, want_tpr, len(bad))):
        p = min(max(want, 0.03), 0.97)
        sd = math.sqrt(p * (1 - p) * (1 / n + 1 / n_card))
        assert abs(got - want) <= 3.5 * sd, (got, want, sd)


def test_raw_jpeg_from_mosquitto_pub_gets_a_verdict_row(stack: Stack, tmp_path: Path) -> None:
    from edge.model.synthetic import render_frame

    img = render_frame(SEED + 1, 0, "washer", None)
    jpg = tmp_path / "part.jpg"
    img.save(jpg, format="JPEG", quality=92)
    cam = StreamRef.camera(stack.site, "L1", "st1", "c1")
    before = query(
        stack.db, "SELECT count(*) FROM frames WHERE stream = ? AND seq IS NULL", cam.key
    )[0][0]
    u = urlsplit(stack.url)
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            u.hostname or "127.0.0.1",
            "-p",
            str(u.port or 1883),
            "-q",
            "1",
            "-t",
            frame_topic(cam),
            "-f",
            str(jpg),
        ],
        check=True,
        timeout=30,
    )
    rows = wait_for(
        lambda: query(
            stack.db,
            "SELECT frame_key, verdict, latency_ms FROM frames WHERE stream = ? AND seq IS NULL",
            cam.key,
        )[before:],
        60,
        0.2,
        what="raw JPEG row",
    )
    key, verdict, latency = rows[0]
    assert key.startswith(f"{cam.key}#r:") and verdict in ("ok", "defect", "anomaly")
    assert latency >= 0
    assert np.isfinite(latency)
