"""Distinctiveness pruning: constructed duplicate / complementary / dead units are merged or
removed, the rebuilt model is smaller, and its outputs do not change."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.errors import EdgefaceError
from edgeface.optimize.distinctiveness import prune_dense_by_distinctiveness

RNG = np.random.default_rng(0)


def _dense_net(hidden_act=None, classes=3, softmax=True):
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((10,))
    h = keras.layers.Dense(6, activation=hidden_act, name="hid")(inp)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="out")(h)
    return keras.Model(inp, out)


def _set(model, name, fn):
    w = [v.copy() for v in model.get_layer(name).get_weights()]
    fn(w)
    model.get_layer(name).set_weights(w)


def _predict(model, x):
    return np.asarray(model(x, training=False))


def test_identical_units_are_merged_output_unchanged():
    m = _dense_net("relu")

    def dup(w):
        w[0][:, 1] = w[0][:, 0]
        w[1][1] = w[1][0] = 0.2
    _set(m, "hid", dup)
    x = RNG.normal(size=(300, 10)).astype(np.float32)
    new, rep = prune_dense_by_distinctiveness(m, "hid", x)
    assert [(d["keep"], d["drop"]) for d in rep["merged"]] in ([(0, 1)], [(1, 0)])
    assert rep["merged"][0]["scale"] == pytest.approx(1.0)  # the seed's "add the outgoing weights"
    assert rep["units_before"] == 6 and rep["units_after"] == 5 and new.get_layer("hid").units == 5
    assert rep["params_after"] == rep["params_before"] - (10 + 1) - 3
    np.testing.assert_allclose(_predict(new, x), _predict(m, x), atol=1e-5)


def test_opposite_units_are_both_removed_output_unchanged():
    m = _dense_net(None, softmax=False)

    def opposite(w):
        w[0][:, 3] = -w[0][:, 2]
        w[1][3] = -w[1][2]
    _set(m, "hid", opposite)

    def same_outgoing(w):
        w[0][3] = w[0][2]  # equal outgoing weights: their contributions cancel exactly
    _set(m, "out", same_outgoing)
    x = RNG.normal(size=(300, 10)).astype(np.float32)
    new, rep = prune_dense_by_distinctiveness(m, "hid", x)
    assert rep["removed_pairs"] and sorted(rep["removed_pairs"][0]["units"]) == [2, 3]
    assert rep["removed_pairs"][0]["angle_deg"] > 179
    assert rep["units_after"] == 4
    np.testing.assert_allclose(_predict(new, x), _predict(m, x), atol=1e-4)


def test_scaled_copy_and_dead_unit():
    """A relu unit that is 2x another merges with scale 2; a unit that never fires is dropped."""
    m = _dense_net("relu", softmax=False)

    def edit(w):
        w[0][:, 4] = 2 * w[0][:, 0]
        w[1][4] = 2 * w[1][0]
        w[0][:, 5] = -np.abs(w[0][:, 5]) * 0  # all-zero input weights ...
        w[1][5] = -1.0  # ... and a negative bias: relu output is always 0
    _set(m, "hid", edit)
    x = RNG.normal(size=(300, 10)).astype(np.float32)
    new, rep = prune_dense_by_distinctiveness(m, "hid", x)
    assert rep["dead"] == [5]
    merge = rep["merged"][0]
    assert {merge["keep"], merge["drop"]} == {0, 4}
    assert merge["scale"] == pytest.approx(0.5 if merge["keep"] == 4 else 2.0, rel=1e-5)
    assert rep["units_after"] == 4
    np.testing.assert_allclose(_predict(new, x), _predict(m, x), atol=1e-4)


def test_distinct_units_are_kept():
    m = _dense_net("tanh")
    x = RNG.normal(size=(300, 10)).astype(np.float32)
    new, rep = prune_dense_by_distinctiveness(m, "hid", x, merge_deg=1.0, remove_deg=179.0)
    assert new is m and rep["units_after"] == rep["units_before"] == 6


def test_embedding_1x1_conv_chain_with_bn_and_pooling():
    """A 1x1 conv used as a dense layer (conv -> BN -> ReLU -> GAP -> 1x1 conv embedding)."""
    import tf_keras as keras
    keras.utils.set_random_seed(1)
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 1, use_bias=False, name="last_conv")(inp)
    x = L.ReLU(6.0, name="last_relu")(L.BatchNormalization(name="last_bn")(x))
    x = L.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    x = L.Conv2D(5, 1, use_bias=False, name="embedding")(x)
    m = keras.Model(inp, L.Flatten()(x))

    def copy_filter(w):
        w[0][..., 7] = w[0][..., 2]
    _set(m, "last_conv", copy_filter)

    def bn(w):  # gamma, beta, mean, var: make channel 7 a copy of channel 2 through BN too
        for v in w:
            v[7] = v[2]
        w[1][2] = w[1][7] = 0.5
    _set(m, "last_bn", bn)
    x_in = RNG.uniform(-1, 1, (64, 8, 8, 3)).astype(np.float32)
    new, rep = prune_dense_by_distinctiveness(m, "last_conv", x_in, merge_deg=0.5)
    assert rep["chain"] == ["last_bn", "last_relu", "gap"] and rep["consumer"] == "embedding"
    assert any({d["keep"], d["drop"]} == {2, 7} for d in rep["merged"])
    assert new.get_layer("last_conv").filters == rep["units_after"] < 12
    np.testing.assert_allclose(_predict(new, x_in), _predict(m, x_in), atol=1e-4)


def test_output_layer_is_refused():
    m = _dense_net()
    with pytest.raises(EdgefaceError, match="not a Dense"):
        prune_dense_by_distinctiveness(m, "out", RNG.normal(size=(10, 10)).astype(np.float32))
