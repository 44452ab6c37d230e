"""Distillation losses against plain numpy: pointwise cosine and the relational (pairwise) term."""
import numpy as np
import pytest

import edgeface  # noqa: F401
import tensorflow as tf

from edgeface.losses import cosine_distill_loss, similarity_distill_loss


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cosine_distill_matches_numpy():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 16)).astype(np.float32), rng.normal(size=(6, 16)).astype(np.float32)
    want = np.mean(1 - np.sum(_unit(s) * _unit(t), axis=1))
    assert float(cosine_distill_loss(s, t)) == pytest.approx(want, abs=1e-6)
    assert float(cosine_distill_loss(3 * t, t)) == pytest.approx(0.0, abs=1e-6)  # scale-free


def test_similarity_distill_matches_numpy_off_diagonal_mean():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    gs, gt = _unit(s) @ _unit(s).T, _unit(t) @ _unit(t).T
    off = ~np.eye(5, dtype=bool)
    assert float(similarity_distill_loss(s, t)) == pytest.approx(np.mean((gs - gt)[off] ** 2), rel=1e-5)


def test_similarity_distill_ignores_rotation_and_width_but_not_structure():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(8, 16)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    # A rotated (and rescaled) copy of the teacher's space has the same pairwise cosines: loss 0,
    # although pointwise cosine distillation would call it far off.
    rotated = (2.5 * t @ q).astype(np.float32)
    assert float(similarity_distill_loss(rotated, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distill_loss(rotated, t)) > 0.5
    # A wider student: the teacher zero-padded to 24 dims keeps every cosine.
    wide = np.concatenate([t, np.zeros((8, 8), np.float32)], axis=1)
    assert float(similarity_distill_loss(wide, t)) == pytest.approx(0.0, abs=1e-6)
    # Swapping two students breaks the pair structure.
    shuffled = t[[1, 0, *range(2, 8)]]
    assert float(similarity_distill_loss(shuffled, t)) > 1e-3


def test_similarity_distill_gradient_is_finite_and_descends():
    rng = np.random.default_rng(3)
    t = tf.constant(rng.normal(size=(6, 8)), tf.float32)
    s = tf.Variable(rng.normal(size=(6, 8)), dtype=tf.float32)
    before = float(similarity_distill_loss(s, t))
    for _ in range(50):
        with tf.GradientTape() as tape:
            loss = similarity_distill_loss(s, t)
        g = tape.gradient(loss, s)
        assert np.all(np.isfinite(g.numpy()))
        s.assign_sub(0.5 * g)
    assert float(similarity_distill_loss(s, t)) < 0.5 * before
    # a batch of one has no pairs: 0, not NaN
    assert float(similarity_distill_loss(s[:1], t[:1])) == pytest.approx(0.0, abs=1e-9)
