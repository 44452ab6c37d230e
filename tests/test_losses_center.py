"""Center loss: value and the moving-average centre update, checked against hand computation."""
import numpy as np
import pytest

import edgeface  # noqa: F401
import tensorflow as tf

from edgeface.errors import EdgefaceError
from edgeface.losses import CenterLoss


def test_center_update_matches_hand_computation():
    cl = CenterLoss(num_classes=3, dim=2, alpha=0.5)
    cl.centers.assign([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    x = np.array([[3.0, 0.0], [1.0, 2.0], [0.0, 0.0], [2.0, 2.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # Loss: 1/2 * mean ||x_i - c_yi||^2 = 1/2 * (4 + 4 + 4 + 4) / 4 = 2.
    assert float(cl(x, y)) == pytest.approx(2.0)
    delta = cl.update(x, y).numpy()
    # Class 0 (n=2): sum(c0 - x_i) = (1-3, 0-0) + (1-1, 0-2) = (-2, -2); / (1+2) -> (-2/3, -2/3).
    # Class 1 (n=2): (0-0, 2-0) + (0-2, 2-2) = (-2, 2); / 3 -> (-2/3, 2/3). Class 2 absent: 0.
    np.testing.assert_allclose(delta, [[-2 / 3, -2 / 3], [-2 / 3, 2 / 3], [0, 0]], rtol=1e-6)
    # c <- c - 0.5 * delta.
    np.testing.assert_allclose(cl.centers.numpy(), [[1 + 1 / 3, 1 / 3], [1 / 3, 2 - 1 / 3], [5, 5]], rtol=1e-6)


def test_center_update_single_and_generic():
    rng = np.random.default_rng(0)
    cl = CenterLoss(num_classes=4, dim=3, alpha=0.3)
    c0 = rng.normal(size=(4, 3)).astype(np.float32)
    cl.centers.assign(c0)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    y = np.array([2, 2, 2, 0, 3, 3, 0])
    cl.update(x, y)
    expect = c0.copy()
    for j in range(4):
        members = x[y == j]
        d = (c0[j] - members).sum(axis=0) / (1 + len(members))
        expect[j] = c0[j] - 0.3 * d
    np.testing.assert_allclose(cl.centers.numpy(), expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cl.centers.numpy()[1], c0[1])  # class 1 not in the batch: unchanged


def test_centers_are_not_trained_by_backprop_but_features_get_gradient():
    cl = CenterLoss(num_classes=2, dim=2)
    assert not cl.trainable_variables and len(cl.variables) == 1
    cl.centers.assign([[1.0, 1.0], [0.0, 0.0]])
    x = tf.Variable([[3.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = cl(x, [0])
    # d/dx 1/2 ||x - c||^2 = x - c.
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[2.0, 0.0]])


def test_center_loss_rejects_bad_alpha():
    with pytest.raises(EdgefaceError):
        CenterLoss(3, 2, alpha=0.0)
