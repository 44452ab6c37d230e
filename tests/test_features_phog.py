"""PHOG: hand-computed gradients and histograms, per-level sums, orientation binning, shapes, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.features import phog, phog_length
from edgeface.features.phog import gradients

RNG = np.random.default_rng(0)


def _levels(v, bins, levels):
    out, i = [], 0
    for l in range(levels + 1):
        n = bins * 4 ** l
        out.append(v[i:i + n].reshape(4 ** l, bins))
        i += n
    assert i == len(v)
    return out


def test_hand_computed_vertical_edge():
    """Rows [0 0 1 1]: gx = f(x+1) - f(x-1) (border replicated) = [0 1 1 0], gy = 0 -> theta 0, bin 0.
    Level 0: bin 0 = 8 (2 pixels x 4 rows); level 1: each of the 4 cells holds 2 (one pixel per row)."""
    img = np.tile([0.0, 0.0, 1.0, 1.0], (4, 1))
    mag, theta = gradients(img)
    np.testing.assert_array_equal(mag, np.tile([0, 1, 1, 0], (4, 1)))
    assert np.all(theta == 0)
    v = phog(img, bins=4, levels=1, normalise_by=None)
    l0, l1 = _levels(v, 4, 1)
    assert l0.tolist() == [[8, 0, 0, 0]]
    assert l1.tolist() == [[2, 0, 0, 0]] * 4


def test_hand_computed_orientation_bins():
    """f = x + 2y on 3x3, border replicated: gx = 2 in the middle column, 1 in the outer ones;
    gy = 4 in the middle row, 2 in the outer ones. theta = atan2(gy, gx), 9 bins of 20 deg (0-180):
      centre (2, 4) 63.4 deg and corners (1, 2) 63.4 deg -> bin 3, |g| sqrt(20) and 4 x sqrt(5)
      middle row, outer columns (1, 4) 76.0 deg      -> bin 3, 2 x sqrt(17)
      middle column, outer rows (2, 2) 45.0 deg      -> bin 2, 2 x sqrt(8)"""
    y, x = np.mgrid[0:3, 0:3]
    img = (x + 2 * y).astype(float)
    mag, theta = gradients(img)
    assert mag[1, 1] == pytest.approx(np.sqrt(20)) and theta[1, 1] == pytest.approx(np.degrees(np.arctan2(4, 2)))
    assert mag[0, 0] == pytest.approx(np.sqrt(5)) and theta[0, 1] == pytest.approx(45.0)
    v = phog(img, bins=9, levels=0, normalise_by=None)
    want = np.zeros(9)
    want[2] = 2 * np.sqrt(8)
    want[3] = np.sqrt(20) + 4 * np.sqrt(5) + 2 * np.sqrt(17)
    np.testing.assert_allclose(v, want)
    # flipped image: the gradient points the other way: same bin unsigned, opposite bin signed
    flip = img[::-1, ::-1]
    np.testing.assert_allclose(phog(flip, bins=9, levels=0, normalise_by=None), v)
    s = phog(img, bins=4, levels=0, angle=360, normalise_by=None)
    sf = phog(flip, bins=4, levels=0, angle=360, normalise_by=None)
    assert np.flatnonzero(s).tolist() == [0] and np.flatnonzero(sf).tolist() == [2]  # 63 deg vs 243 deg


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_every_level_sums_to_the_total_magnitude(levels):
    img = RNG.integers(0, 256, size=(48, 48)).astype(np.uint8)
    total = gradients(img)[0].sum()
    v = phog(img, bins=8, levels=levels, normalise_by=None)
    assert v.shape == (phog_length(8, levels),)
    for h in _levels(v, 8, levels):
        assert h.sum() == pytest.approx(total)
    n = phog(img, bins=8, levels=levels)
    assert n.sum() == pytest.approx(1.0)
    for h in _levels(n, 8, levels):
        assert h.sum() == pytest.approx(1.0 / (levels + 1))
    assert np.linalg.norm(phog(img, bins=8, levels=levels, normalise_by="l2")) == pytest.approx(1.0)


def test_lengths_and_inputs():
    assert phog_length(8, 2) == 168 and phog_length(8, 3) == 680 and phog_length(9, 2) == 189
    img = RNG.integers(0, 256, size=(112, 96)).astype(np.uint8)
    assert phog(img, bins=9, levels=3).shape == (9 * 85,)
    np.testing.assert_allclose(phog(img[..., None]), phog(img))
    assert phog(np.zeros((8, 8))).sum() == 0  # a flat image has no gradients: zeros, not NaN
    # cells: a 4x4 grid over a 10-pixel image splits rows 0-2, 3-4, 5-7, 8-9
    big = np.zeros((10, 10))
    big[:, 5:] = 1  # edge between columns 4 and 5: gradient at columns 4, 5 (cells 1 and 2)
    l2 = _levels(phog(big, bins=2, levels=2, normalise_by=None), 2, 2)[2].reshape(4, 4, 2)
    assert np.flatnonzero(l2[..., 0].sum(0)).tolist() == [1, 2]


@pytest.mark.parametrize("bad, kw, msg", [
    (np.zeros((48, 48, 4)), {}, "2-D grey image"),
    (np.zeros((3, 3)), {"levels": 2}, "smaller than the 4x4"),
    (np.zeros((8, 8)), {"levels": -1}, "levels"),
    (np.zeros((8, 8)), {"bins": 0}, "bins"),
    (np.zeros((8, 8)), {"angle": 90}, "angle"),
    (np.full((8, 8), np.inf), {}, "NaN or inf"),
    (np.zeros((8, 8)), {"normalise_by": "max"}, "normalise_by"),
])
def test_bad_inputs(bad, kw, msg):
    with pytest.raises(EdgefaceError, match=msg):
        phog(bad, **kw)
