"""edgeface.runtime.tta: the views against independent constructions (OpenCV warps, numpy flips)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.runtime import tta


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 48, 48, 1)).astype(np.float32)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_shift_is_opencvs_reflect_101_warp(batch, d):
    for dx, dy in ((d, d), (-d, d), (d, -d), (-d, -d), (d, 0), (0, -d)):
        want = np.stack([cv2.warpAffine(im, np.float32([[1, 0, dx], [0, 1, dy]]), (48, 48), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_REFLECT_101)[:, :, None] for im in batch])
        assert np.array_equal(tta.shifted(batch, dx, dy), want)


def test_views_per_mode(batch):
    none, flip, ten = (tta.views(batch, m) for m in tta.MODES)
    assert len(none) == 1 and none[0] is batch
    assert len(flip) == 2 and np.array_equal(flip[1], batch[:, :, ::-1])
    assert len(ten) == 10 and np.array_equal(ten[0], batch) and np.array_equal(ten[1], batch[:, :, ::-1])
    # the shift is 1 px at 48 and scales with the side; each shifted view is followed by its mirror
    assert np.array_equal(ten[2], tta.shifted(batch, 1, 1)) and np.array_equal(ten[3], ten[2][:, :, ::-1])
    big = np.zeros((1, 96, 96, 1), np.float32)
    big[0, 40, 50] = 1
    assert np.argwhere(tta.views(big, "ten")[2][0, :, :, 0] == 1).tolist() == [[42, 52]]
    assert len({v.tobytes() for v in ten}) == 10


def test_average_is_the_mean_over_views(batch):
    w = np.random.default_rng(1).normal(size=(48 * 48, 7)).astype(np.float32)

    def predict(x):
        z = x.reshape(len(x), -1) @ w
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    got = tta.average(predict, batch, "ten", shift=2)
    want = np.mean([predict(v) for v in tta.views(batch, "ten", shift=2)], axis=0)
    assert got.shape == (3, 7) and np.allclose(got, want, atol=1e-6) and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.allclose(tta.average(predict, batch, "none"), predict(batch), atol=1e-7)


def test_unknown_mode_is_a_one_line_error(batch):
    with pytest.raises(EdgefaceError, match="one of none, flip, ten"):
        tta.views(batch, "five")
