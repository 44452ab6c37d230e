"""Five-point similarity alignment: exact on known landmarks, recovers random similarities, never reflects."""
import numpy as np
import pytest

from edgeface.align.transform import (ARCFACE_112, TEMPLATES, align_face, apply_transform, centre_crop,
                                      get_template, similarity_transform)
from edgeface.errors import EdgefaceError


def random_similarity(rng):
    theta = rng.uniform(-np.pi, np.pi)
    s = rng.uniform(0.3, 3.0)
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return np.hstack([s * r, rng.uniform(-100, 100, (2, 1))])


def test_known_landmarks_land_on_template_within_1px():
    # Template points under a random rotation, scale and shift, mapped back onto the template.
    rng = np.random.default_rng(0)
    m = random_similarity(rng)
    src = apply_transform(m, ARCFACE_112)
    back = similarity_transform(src, ARCFACE_112)
    assert np.abs(apply_transform(back, src) - ARCFACE_112).max() < 1.0


def test_random_similarity_recovered():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 250, (5, 2))
    for _ in range(50):
        m = random_similarity(rng)
        est = similarity_transform(pts, apply_transform(m, pts))
        np.testing.assert_allclose(est, m, atol=1e-6)


def test_reflection_never_returned():
    rng = np.random.default_rng(2)
    for _ in range(50):
        pts = rng.uniform(0, 250, (5, 2))
        mirrored = pts * np.array([-1.0, 1.0])  # only a reflection maps pts onto these exactly
        m = similarity_transform(pts, mirrored)
        assert np.linalg.det(m[:, :2]) > 0


def test_warp_moves_a_landmark_pixel_onto_the_template():
    # A bright dot at each source landmark must end up at the template point in the crop.
    rng = np.random.default_rng(3)
    m = random_similarity(rng)
    m[:, :2] /= np.sqrt(abs(np.linalg.det(m[:, :2]))) / 2.0  # scale 2: face twice the template
    src = apply_transform(m, ARCFACE_112)
    src -= src.min(0) - 20
    img = np.zeros((int(src[:, 1].max()) + 30, int(src[:, 0].max()) + 30, 3), np.uint8)
    k = 0  # left eye
    x, y = np.round(src[k]).astype(int)
    img[y - 2:y + 3, x - 2:x + 3] = 255
    crop = align_face(img, src, "arcface112")
    assert crop.shape == (112, 112, 3)
    ys, xs = np.nonzero(crop[:, :, 0] > 0)
    w = crop[ys, xs, 0].astype(float)
    centre = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    # the dot centre is the rounded landmark: allow that rounding (<=0.5 px source = 0.25 px crop) + 1 px
    assert np.linalg.norm(centre - ARCFACE_112[k]) < 1.0


def test_templates_and_fallback_crop_shapes():
    img = np.full((250, 250, 3), 128, np.uint8)
    for name, t in TEMPLATES.items():
        assert centre_crop(img, name).shape == (t.height, t.width, 3)
    with pytest.raises(EdgefaceError):
        get_template("nope")
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), ARCFACE_112)
