"""Registration to a camera's reference pose by polar unwrapping (edge/model/register.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.model.register import Pose, RegistrationError, Template, warp
from edge.model.synthetic import render_part

pytestmark = pytest.mark.unit
SIZE = 160


def _part(seed: int, part: str) -> np.ndarray:
    img, _ = render_part((seed, 7), part, None, 448)
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)


@pytest.mark.parametrize("part", ["washer", "bracket", "pcb"])
@pytest.mark.parametrize("angle_deg", [-25.0, 10.0, 120.0])
def test_a_rotated_and_shifted_copy_is_found(part: str, angle_deg: float) -> None:
    ref = _part(1, part)
    tmpl = Template.of(ref)
    # the same frame moved: rotated about its centroid and shifted by a few pixels
    moved = warp(
        ref, Pose(tmpl.cx - 3.0, tmpl.cy + 2.0, 1.0, -np.deg2rad(angle_deg)), (tmpl.cx, tmpl.cy)
    )
    pose = tmpl.pose(moved)
    got = np.rad2deg(pose.angle)
    err = (got - angle_deg + 180.0) % 360.0 - 180.0  # warping back by the pose undoes the move
    assert abs(err) < 3.0, (part, angle_deg, got)
    back = tmpl.warp(moved, pose)
    inner = (slice(30, SIZE - 30), slice(30, SIZE - 30))
    assert np.abs(back[inner] - ref[inner]).mean() < 0.35 * np.abs(moved[inner] - ref[inner]).mean()


def test_another_part_of_the_same_type_registers_onto_the_reference() -> None:
    ref, other = _part(1, "bracket"), _part(2, "bracket")
    tmpl = Template.of(ref)
    aligned = tmpl.warp(other)
    mask = lambda x: np.abs(x - x[:4].reshape(-1, 3).mean(0)).max(-1) > 40  # noqa: E731
    before = (mask(ref) != mask(other)).mean()
    after = (mask(ref) != mask(aligned)).mean()
    assert after < 0.5 * before or after < 0.01, (before, after)


def test_an_empty_frame_is_an_error() -> None:
    tmpl = Template.of(_part(1, "pcb"))
    with pytest.raises(RegistrationError):
        tmpl.pose(np.full((SIZE, SIZE, 3), 60.0, np.float32))


def test_warp_is_bilinear_sampling_with_the_edge_repeated() -> None:
    """``warp`` (Pillow's affine transform on a padded frame) equals sampling every reference
    pixel's source position bilinearly, edge pixels repeated beyond the frame, for any pose —
    including poses that reach far beyond the frame's edge."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(12):
        img = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.float32)
        cx, cy = (float(v) for v in rng.uniform(20, SIZE - 20, 2))
        pose = Pose(cx, cy, float(rng.uniform(0.7, 1.4)), float(rng.uniform(-3.1, 3.1)))
        centre = (float(rng.uniform(60, 100)), float(rng.uniform(60, 100)))
        ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
        c, s = np.cos(pose.angle), np.sin(pose.angle)
        dx, dy = xs - centre[0], ys - centre[1]
        sx = pose.cx + pose.scale * (c * dx - s * dy)
        sy = pose.cy + pose.scale * (s * dx + c * dy)
        want = np.stack(
            [
                ndimage.map_coordinates(img[..., k], [sy, sx], order=1, mode="nearest")
                for k in range(3)
            ],
            -1,
        )
        assert np.abs(warp(img, pose, centre) - want).max() < 1e-3
