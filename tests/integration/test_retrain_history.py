"""`linewatch model train --from-history` end to end on a small history stored through the real
store path, then `linewatch model promote` deciding on the card it wrote (fast test profile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import edge_tinymodel as tiny
import numpy as np
import pytest
from history_kit import Stored, store_history
from store_support import T0, cam, migrated_sqlite

from edge.model import card as cardmod
from edge.model.dataset import synthetic
from edge.model.promote import worse_families
from services.store.engine import make_engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
CAM = cam()


def _history() -> list[Stored]:
    """48 good parts (4 of them operators' not-a-defect marks) and 8 confirmed defects of
    each of two families, one washer camera, a frame a minute, families interleaved."""
    good = synthetic(7, 48, 64, (), part_types=("washer",), render_size=128)
    bad = synthetic(8, 16, 64, ("scratch", "dent"), 1.0, ("washer",), render_size=128)
    frames: list[Stored] = []
    for i, px in enumerate(good.images):
        label = "not_a_defect" if i % 12 == 5 else "sample"
        frames.append(Stored(f"{CAM.key}#0:{i}", T0 + timedelta(minutes=i), px, label))
    for j, (px, fam) in enumerate(zip(bad.images, bad.labels, strict=True)):
        at = T0 + timedelta(minutes=3 * j + 1, seconds=30)
        frames.append(Stored(f"{CAM.key}#0:{100 + j}", at, px, "confirmed", fam))
    return frames


def _linewatch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )


def test_train_from_history_then_promote(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    engine = make_engine(url)
    frames = _history()
    store_history(engine, CAM, frames)
    engine.dispose()
    served = tiny.build(tmp_path / "served")
    out = tmp_path / "models" / "cand"
    res = _linewatch(
        "model", "train", "--from-history", "--camera", CAM.key, "--db-url", url,
        "--served", str(served), "--out", str(out), "--profile", "test", "--epochs", "2",
        "--size", "64",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]

    tree = out.parent / ".cand.history"
    manifest = json.loads((tree / "manifest.json").read_text())
    trained = {k for r in manifest["train"].values() for k in r["files"].values()}
    held = {k for r in manifest["heldout"].values() for k in r["files"].values()}
    assert held and trained and not held & trained
    assert trained | held == {f.key for f in frames}
    on_disk = {p.name for p in (tree / "train").rglob("*.png")}
    held_files = {f for r in manifest["heldout"].values() for f in r["files"]}
    assert on_disk and not on_disk & held_files  # no held-out frame in the training tree
    for label, rec in manifest["heldout"].items():  # newest of each kind held out
        assert rec["first"] > manifest["train"][label]["last"]

    card = cardmod.load_card(out)
    hist = card.metrics["history"]
    n_held = sum(r["count"] for r in manifest["heldout"].values())
    for who in ("candidate", "served"):
        figs = hist[who]
        assert figs["n_frames"] == n_held and figs["n_good"] == manifest["heldout"]["good"]["count"]
        assert set(figs["family_auroc"]) == set(figs["per_family_recall"]) == {"scratch", "dent"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in figs["family_auroc"].values())
    assert hist["served_model"]["card_sha256"] == cardmod.sha256_file(served / "model.card.json")
    assert card.recipe["history"]["train"]["good"]["count"] == 36
    assert card.recipe["history"]["heldout"]["scratch"]["count"] == 2
    assert card.input.size == 64 and set(card.class_names) == {"good", "scratch", "dent"}
    print(json.dumps({"history": hist}, default=str))

    worse = worse_families(hist)
    res = _linewatch("model", "promote", str(out), "--to", str(served))
    if worse:
        assert res.returncode == 1 and "worse than the served model on" in res.stderr
        assert all(w.family in res.stderr for w in worse)
        assert cardmod.load_card(served).name == "tiny-test"
    else:
        assert res.returncode == 0, res.stderr
        assert cardmod.load_card(served).name == card.name
    np.testing.assert_equal(bool(worse), res.returncode != 0)
