"""LPQ: the STFT against its definition, hand-computed codes of point images, the decorrelation
transform, blur insensitivity (closer than plain LBP or pixel histograms), shapes and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.features import lbp, lbp_codes, lpq, lpq_codes
from edgeface.features.lpq import decorrelation, frequencies, stft

RNG = np.random.default_rng(0)


def test_stft_matches_the_definition():
    x = RNG.normal(size=(9, 10))
    f = stft(x, 5)
    assert f.shape == (5, 6, 4)
    r, a = 2, 1 / 5
    for (i, j) in [(0, 0), (3, 4), (4, 5)]:
        for k, (ux, uy) in enumerate([(a, 0), (0, a), (a, a), (a, -a)]):
            want = sum(x[i + r + dy, j + r + dx] * np.exp(-2j * np.pi * (ux * dx + uy * dy))
                       for dy in range(-r, r + 1) for dx in range(-r, r + 1))
            assert f[i, j, k] == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(frequencies(7), [[1 / 7, 0], [0, 1 / 7], [1 / 7, 1 / 7], [1 / 7, -1 / 7]])


def _point(dy, dx):
    img = np.zeros((3, 3))
    img[1 + dy, 1 + dx] = 1.0
    return img


def test_hand_computed_codes_without_decorrelation():
    """3x3 window, a = 1/3: a unit point at offset d gives F(u) = exp(-2j pi u.d).

    centre:   F = 1 everywhere: Re > 0, Im = 0 -> bits 0, 2, 4, 6 -> 85
    d=(dx=1): F(u1) = F(u3) = F(u4) = exp(-2j pi/3) = -0.5 - 0.866j (no bit), F(u2) = 1 (bit 2) -> 4
    d=(dx=-1): exp(+2j pi/3) = -0.5 + 0.866j -> Im bits 1, 5, 7; F(u2) = 1 -> bit 2 -> 2+4+32+128 = 166
    d=(dy=1): F(u1) = 1 (bit 0); F(u2) = F(u3) = exp(-2j pi/3) (none); F(u4) = exp(+2j pi/3) (bit 7) -> 129
    """
    assert lpq_codes(_point(0, 0), win=3, decorrelate=False).tolist() == [[85]]
    assert lpq_codes(_point(0, 1), win=3, decorrelate=False).tolist() == [[4]]
    assert lpq_codes(_point(0, -1), win=3, decorrelate=False).tolist() == [[166]]
    assert lpq_codes(_point(1, 0), win=3, decorrelate=False).tolist() == [[129]]
    h = lpq(_point(0, 1), win=3, decorrelate=False, normalise_by=None)
    assert h.shape == (256,) and h[4] == 1 and h.sum() == 1


def test_decorrelation_whitens_the_model_covariance():
    """V^T D V is diagonal for the rho ** distance model; V is orthogonal with a fixed sign convention."""
    vt = decorrelation(7, 0.9)
    np.testing.assert_allclose(vt @ vt.T, np.eye(8), atol=1e-10)
    big = np.argmax(np.abs(vt), axis=1)
    assert np.all(vt[np.arange(8), big] > 0)
    # covariance of G under the model, from random fields with that correlation
    r = 3
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    pos = np.stack([dx.ravel(), dy.ravel()], 1)
    c = 0.9 ** np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    m = []
    for ux, uy in frequencies(7):
        q = np.exp(-2j * np.pi * (ux * pos[:, 0] + uy * pos[:, 1]))
        m += [q.real, q.imag]
    m = np.array(m)
    cov = vt @ (m @ c @ m.T) @ vt.T
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 1e-4 * np.abs(np.diag(cov)).max()


def _portrait(size):
    cv2 = pytest.importorskip("cv2")
    cbook = pytest.importorskip("matplotlib.cbook")
    import matplotlib.image as mpimg
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = mpimg.imread(f)
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)


@pytest.mark.parametrize("size", [48, 112])
def test_blur_insensitivity_beats_lbp_and_pixel_histograms(size):
    """L1 distance between the histograms of a face and its Gaussian blur (sigma 1):
    measured 0.32 / 0.86 / 0.49 (LPQ / LBP / pixels) at 48x48, 0.21 / 0.95 / 0.27 at 112x112."""
    import cv2
    a = _portrait(size)
    b = cv2.GaussianBlur(a, (0, 0), 1.0)

    def dist(fn):
        return float(np.abs(fn(a) - fn(b)).sum())

    pix = dist(lambda im: np.histogram(im, 256, (0, 256))[0] / im.size)
    d_lpq, d_lbp = dist(lpq), dist(lbp)
    assert d_lpq < 0.5 * d_lbp
    assert d_lpq < 0.9 * pix
    # and the blurred image is not simply similar: its LBP codes change a lot
    assert np.mean(lbp_codes(a) != lbp_codes(b)) > 0.3


def test_grid_shapes_and_normalisation():
    img = RNG.integers(0, 256, size=(48, 48)).astype(np.uint8)
    codes = lpq_codes(img)
    assert codes.shape == (42, 42) and codes.dtype == np.uint8
    v = lpq(img, grid=(4, 4))
    assert v.shape == (16 * 256,)
    np.testing.assert_allclose(v.reshape(16, 256).sum(1), 1.0)
    counts = lpq(img, grid=(4, 4), normalise_by=None).reshape(16, 256)
    assert counts.sum() == 42 * 42  # every code in exactly one cell
    assert lpq(img, grid=3, normalise_by="l2").reshape(9, 256).dot(np.ones(256)).shape == (9,)
    # 1-channel and RGB inputs
    np.testing.assert_array_equal(lpq(img[..., None]), lpq(img))
    assert lpq(np.repeat(img[..., None], 3, axis=2)).shape == (256,)
    assert lbp(img, grid=2).shape == (4 * 256,)


def test_lbp_hand_computed():
    img = np.array([[5, 9, 1], [4, 4, 6], [7, 2, 3]])
    # neighbours clockwise from top-left: 5 9 1 6 3 2 7 4  vs centre 4 -> >=: 1 1 0 1 0 0 1 1
    assert lbp_codes(img).tolist() == [[1 + 2 + 8 + 64 + 128]]


@pytest.mark.parametrize("bad, kw, msg", [
    (np.zeros((5, 5)), {}, "smaller than the 7x7"),
    (np.zeros((48, 48, 2)), {}, "2-D grey image"),
    (np.zeros(48), {}, "2-D grey image"),
    (np.full((9, 9), np.nan), {}, "NaN"),
    (np.array([["a"] * 9] * 9), {}, "numeric"),
    (np.zeros((9, 9)), {"win": 4}, "odd int"),
    (np.zeros((9, 9)), {"rho": 1.5}, "rho"),
    (np.zeros((9, 9)), {"grid": (0, 2)}, "grid"),
    (np.zeros((9, 9)), {"grid": (4, 4)}, "does not fit"),
    (np.zeros((9, 9)), {"normalise_by": "max"}, "normalise"),
])
def test_bad_inputs(bad, kw, msg):
    with pytest.raises(EdgefaceError, match=msg):
        lpq(bad, **kw)
