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
