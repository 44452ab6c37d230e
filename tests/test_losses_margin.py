"""Margin heads (ArcFace, CosFace), softmax CE and the distillation loss against hand values."""
import math

import numpy as np
import pytest

import edgeface  # noqa: F401
import tensorflow as tf

from edgeface.errors import EdgefaceError
from edgeface.losses import ArcFaceHead, CosFaceHead, cosine_distill_loss, make_head, softmax_cross_entropy


def _head_with_angles(cls, angles, **kw):
    """A 2-d head whose class weights sit at `angles` (radians) on the unit circle."""
    head = cls(len(angles), **kw)
    head.build((None, 2))
    w = np.stack([np.cos(angles), np.sin(angles)]).astype(np.float32) * 3.0  # norm must not matter
    head.kernel.assign(w)
    return head


def test_arcface_logits_hand_values():
    s, m = 10.0, 0.5
    head = _head_with_angles(ArcFaceHead, [0.0, math.pi / 2, 3.0], scale=s, margin=m)
    x = np.array([[2.0, 0.0]] * 3, np.float32)  # embedding at angle 0 (norm 2, must not matter)
    # Label 0: theta=0 -> s*cos(0.5); label 1: theta=pi/2 -> s*cos(pi/2+0.5);
    # label 2: theta=3.0 > pi - m -> fallback s*(cos(3) - sin(pi - m)*m).
    logits = head(x, np.array([0, 1, 2])).numpy()
    cos = np.array([1.0, 0.0, math.cos(3.0)])
    np.testing.assert_allclose(logits[0], s * np.array([math.cos(0.5), cos[1], cos[2]]), atol=1e-5)
    np.testing.assert_allclose(logits[1], s * np.array([cos[0], math.cos(math.pi / 2 + 0.5), cos[2]]), atol=1e-5)
    np.testing.assert_allclose(logits[2], s * np.array([cos[0], cos[1], math.cos(3.0) - math.sin(math.pi - m) * m]),
                               atol=1e-5)
    # Without labels: plain scaled cosine.
    np.testing.assert_allclose(head(x).numpy()[0], s * cos, atol=1e-5)


def test_arcface_easy_margin():
    s, m = 8.0, 0.4
    head = _head_with_angles(ArcFaceHead, [0.0, 2.0], scale=s, margin=m, easy_margin=True)
    x = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    logits = head(x, np.array([0, 1])).numpy()
    assert logits[0, 0] == pytest.approx(s * math.cos(m), abs=1e-5)       # cos > 0: margin applied
    assert logits[1, 1] == pytest.approx(s * math.cos(2.0), abs=1e-5)     # cos <= 0: no margin


def test_cosface_logits_hand_values():
    s, m = 16.0, 0.35
    head = _head_with_angles(CosFaceHead, [0.0, math.pi / 3], scale=s, margin=m)
    x = np.array([[0.5, 0.0]], np.float32)
    logits = head(x, np.array([1])).numpy()[0]
    np.testing.assert_allclose(logits, [s * 1.0, s * (0.5 - m)], atol=1e-5)


def test_margin_lowers_target_logit_and_trains():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 16)).astype(np.float32))
    y = tf.constant(rng.integers(0, 5, 8))
    for loss in ("softmax", "center", "arcface", "cosface"):
        head = make_head(loss, 5, scale=16.0)
        logits = head(x, y, training=True)
        assert logits.shape == (8, 5)
        with tf.GradientTape() as tape:
            value = softmax_cross_entropy(y, head(x, y, training=True))
        grads = tape.gradient(value, head.trainable_variables)
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    arc = make_head("arcface", 5, scale=16.0)
    with_margin = arc(x, y).numpy()
    plain = arc(x).numpy()
    idx = (np.arange(8), y.numpy())
    assert (with_margin[idx] < plain[idx]).all()
    with pytest.raises(EdgefaceError):
        make_head("triplet", 5)


def test_softmax_cross_entropy_matches_numpy():
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 3.0, -1.0]], np.float32)
    y = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(softmax_cross_entropy(y, logits)) == pytest.approx(-np.log(p[[0, 1], y]).mean(), rel=1e-5)


def test_cosine_distill_loss():
    s = np.array([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]], np.float32)
    t = np.array([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]], np.float32)
    # 1 - cos: 0, 1, 2 -> mean 1.
    assert float(cosine_distill_loss(s, t)) == pytest.approx(1.0, abs=1e-6)
