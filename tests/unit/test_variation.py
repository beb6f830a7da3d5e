"""Per-camera variation models: fitted on good frames, they score defects above good parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.model.synthetic import render_part
from edge.model.variation import DESCRIPTOR_NAMES, VariationModel, descriptor
from edge.model.variation_set import VariationSet

pytestmark = pytest.mark.unit
SIZE = 128


def _frames(part: str, seeds: range, defect: str | None = None) -> np.ndarray:
    return np.stack(
        [np.asarray(render_part((77, i), part, defect, SIZE)[0], np.uint8) for i in seeds]
    )


@pytest.fixture(scope="module")
def bracket() -> VariationModel:
    return VariationModel.fit(_frames("bracket", range(40)))


def test_defects_score_above_unseen_good_parts(bracket: VariationModel) -> None:
    good = bracket.scores(_frames("bracket", range(100, 112)))
    for fam in ("missing", "discoloration"):
        bad = bracket.scores(_frames("bracket", range(200, 206), fam))
        assert np.median(bad) > np.median(good) + 2.0, (fam, bad, good)
        assert np.mean(bad > np.percentile(good, 75)) >= 4 / 6, (fam, bad, good)


def test_the_anomaly_map_points_at_the_defect(bracket: VariationModel) -> None:
    img, info = render_part((77, 300), "bracket", "missing", SIZE)
    s = bracket.score_one(np.asarray(img), keep=True)
    fmap = bracket.frame_map(s)
    assert fmap.shape == (SIZE, SIZE)
    y, x = np.unravel_index(int(np.argmax(fmap)), fmap.shape)
    ys, xs = np.nonzero(info["mask"])
    assert np.hypot(xs - x, ys - y).min() <= 6
    d = descriptor(s)
    assert d.shape == (len(DESCRIPTOR_NAMES),) and np.isfinite(d).all() and d.any()


def test_a_frame_without_a_part_scores_infinite(bracket: VariationModel) -> None:
    s = bracket.score_one(np.full((SIZE, SIZE, 3), 60, np.uint8))
    assert s.score == np.inf and not descriptor(s).any()


def test_too_few_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        VariationModel.fit(_frames("pcb", range(3)))


def test_save_and_load_give_the_same_scores(bracket: VariationModel, tmp_path: Path) -> None:
    bracket.save(tmp_path / "v.npz")
    again = VariationModel.load(tmp_path / "v.npz")
    x = _frames("bracket", range(400, 403), "scratch")
    assert np.array_equal(bracket.scores(x), again.scores(x))


def test_a_set_scores_each_frame_with_its_part_and_matches_a_camera(tmp_path: Path) -> None:
    goods = np.concatenate([_frames("bracket", range(20)), _frames("pcb", range(20))])
    vs = VariationSet.fit(goods, ["good"] * 40, ["bracket"] * 20 + ["pcb"] * 20, max_frames=20)
    assert set(vs.models) == {"bracket", "pcb"}
    assert vs.match(_frames("pcb", range(50, 53))) == "pcb"
    assert vs.match(_frames("bracket", range(50, 53))) == "bracket"
    names = vs.save(tmp_path)
    again = VariationSet.load(tmp_path, names)
    x = _frames("pcb", range(60, 62))
    s1, d1 = vs.score(x, ["pcb", "pcb"], want_descriptors=True)
    s2, _ = again.score(x, ["pcb", "pcb"])
    assert np.array_equal(s1, s2) and d1.shape == (2, len(DESCRIPTOR_NAMES))
    with pytest.raises(KeyError):
        vs.key_for("washer")
