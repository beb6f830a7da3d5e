"""Contrast-to-noise ratio and the amplitude that reaches a target (edge/model/cnr.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.cnr import amplitude_for, cnr, ring

pytestmark = pytest.mark.unit


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = 120.0 + rng.normal(0.0, 5.0, (96, 96, 3))
    region = np.zeros((96, 96), bool)
    region[40:50, 40:56] = True
    return img, region, ring(region, np.ones((96, 96), bool), 96)


def test_ring_surrounds_the_region_without_touching_it() -> None:
    _, region, around = _scene()
    assert around.any() and not (around & region).any()
    ys, xs = np.nonzero(around)
    assert ys.min() < 40 and ys.max() >= 50 and xs.min() < 40 and xs.max() >= 56


def test_cnr_of_a_known_step() -> None:
    img, region, around = _scene()
    img[region] += 20.0  # 4 noise std brighter
    assert cnr(img, region, around) == pytest.approx(4.0, rel=0.15)
    img[region, 2] += 40.0  # a colour shift in one channel counts as much as brightness
    assert cnr(img, region, around) == pytest.approx(12.0, rel=0.15)


def test_cnr_against_an_expected_value() -> None:
    img, region, around = _scene()
    assert cnr(img, region, around, np.array([100.0, 120.0, 120.0])) == pytest.approx(4.0, rel=0.15)


@pytest.mark.parametrize("target", [2.0, 5.0, 8.0])
def test_amplitude_reaches_the_target(target: float) -> None:
    img, region, around = _scene(1)
    delta = np.zeros_like(img)
    delta[region] = 1.0
    k = amplitude_for(img, delta, region, around, target)
    assert cnr(img + k * delta, region, around) == pytest.approx(target, rel=0.02)
