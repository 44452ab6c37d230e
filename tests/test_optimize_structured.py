"""Structured filter pruning: L2 importance picks the weakest expansion filters, removing dead
filters leaves the outputs identical, the rebuilt MobileNetV2 is narrower, and the seed's stop
rule discards a round whose validation loss moves more than the threshold."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.errors import EdgefaceError
from edgeface.optimize.structured import l2_importance, prunable_groups, prune_filters, structured_prune

RNG = np.random.default_rng(0)


def _block(seed=0):
    """stem -> block0_expand -> BN -> ReLU6 -> dw -> BN -> ReLU6 -> block0_project -> residual Add."""
    import tf_keras as keras
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((12, 12, 4))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    y = L.Conv2D(16, 1, use_bias=False, name="block0_expand")(x)
    y = L.ReLU(6.0, name="block0_expand_relu")(L.BatchNormalization(name="block0_expand_bn")(y))
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="block0_dw")(y)
    y = L.ReLU(6.0, name="block0_dw_relu")(L.BatchNormalization(name="block0_dw_bn")(y))
    y = L.Conv2D(8, 1, use_bias=False, name="block0_project")(y)
    out = L.Add(name="block0_add")([x, L.BatchNormalization(name="block0_project_bn")(y)])
    return keras.Model(inp, L.GlobalAveragePooling2D()(out))


def _kill_filters(model, dead):
    """Zero expansion filters whose whole chain then outputs exactly 0 (BN beta/mean 0)."""
    w = model.get_layer("block0_expand").get_weights()
    w[0][..., dead] = 0.0
    model.get_layer("block0_expand").set_weights(w)
    for bn in ("block0_expand_bn", "block0_dw_bn"):
        g, b, m, v = model.get_layer(bn).get_weights()
        b[dead] = 0.0
        m[dead] = 0.0
        model.get_layer(bn).set_weights([g, b, m, v])


def test_groups_follow_the_channel_chain():
    groups = {g.producer: g for g in prunable_groups(_block())}
    assert list(groups) == ["block0_expand"]
    g = groups["block0_expand"]
    assert g.chain == ["block0_expand_bn", "block0_expand_relu", "block0_dw", "block0_dw_bn", "block0_dw_relu"]
    assert g.consumer == "block0_project" and g.units == 16
    # the residual Add means block outputs (stem, project) are never narrowed
    assert not prunable_groups(_block(), pattern=r"^(stem|block0_project)$")


def test_removing_dead_filters_keeps_outputs_identical():
    m = _block()
    dead = [1, 5, 6, 12]
    _kill_filters(m, dead)
    imp = l2_importance(m, "block0_expand")
    assert set(np.argsort(imp, kind="stable")[:4]) == set(dead)
    new, keeps = prune_filters(m, remove={"block0_expand": 4})
    assert sorted(set(range(16)) - set(keeps["block0_expand"].tolist())) == dead
    assert new.get_layer("block0_expand").filters == 12 and new.get_layer("block0_dw").get_weights()[0].shape[2] == 12
    assert new.get_layer("block0_project").get_weights()[0].shape == (1, 1, 12, 8)
    assert new.count_params() < m.count_params()
    x = RNG.normal(size=(8, 12, 12, 4)).astype(np.float32)
    # float sums over 12 instead of 16 channels run in another order: equal up to rounding, not bitwise
    np.testing.assert_allclose(np.asarray(new(x, training=False)), np.asarray(m(x, training=False)),
                               rtol=1e-5, atol=1e-6)


def test_removing_live_filters_changes_outputs():
    """The counter-check: the identity above is not an accident of the rebuild."""
    m = _block()
    new, _ = prune_filters(m, remove={"block0_expand": 4})
    x = RNG.normal(size=(8, 12, 12, 4)).astype(np.float32)
    assert np.abs(np.asarray(new(x, training=False)) - np.asarray(m(x, training=False))).max() > 1e-4


def test_min_keep_and_bad_layer():
    m = _block()
    new, keeps = prune_filters(m, remove={"block0_expand": 15}, min_keep=8)
    assert len(keeps["block0_expand"]) == 8
    with pytest.raises(EdgefaceError, match="not a prunable"):
        prune_filters(m, remove={"block0_project": 1})


@pytest.fixture(scope="module")
def mnv2_and_faces():
    from convert_helpers import cached_aligned_dir, small_embedder
    d = cached_aligned_dir()
    if d is not None:
        from edgeface.data.calibration import load_calibration
        x, _ = load_calibration(d, (112, 112, 3), 96, seed=4)
    else:
        x = np.random.default_rng(0).uniform(-1, 1, (96, 112, 112, 3)).astype(np.float32)
    return small_embedder(x[:48]), x


def test_mobilenetv2_expand_filters_pruned_and_rebuilt(mnv2_and_faces):
    model, x = mnv2_and_faces
    names = [g.producer for g in prunable_groups(model)]
    assert names and all(n.startswith("block") and n.endswith("_expand") for n in names)
    new, keeps = prune_filters(model, fraction=0.25)
    for name, keep in keeps.items():
        assert new.get_layer(name).filters == len(keep) == model.get_layer(name).filters - model.get_layer(name).filters // 4
        # kept weights are copied, not re-initialised
        np.testing.assert_array_equal(new.get_layer(name).get_weights()[0], model.get_layer(name).get_weights()[0][..., keep])
    assert new.count_params() < model.count_params()
    assert new.output_shape == model.output_shape


def test_structured_prune_round_and_stop_rule(mnv2_and_faces):
    model, x = mnv2_and_faces
    # an untrained net has no redundant filters (any cut moves the loss a lot): a loose threshold
    # exercises the accept path; the seed's 0.1 is for trained models (benchmarks/convert.md)
    pruned, rep = structured_prune(model, x[:64], x[64:], step_fraction=0.25, max_rounds=1, finetune_steps=5,
                                   threshold=2.0, batch_size=16)
    r1 = rep["rounds"][1]
    assert r1["accepted"] and rep["params_after"] == r1["params"] < rep["params_before"]
    assert pruned.count_params() == rep["params_after"] and -1.0 <= r1["val_cosine"] <= 1.0
    # a threshold no real change can meet: the round is discarded and the original model returned
    same, rep0 = structured_prune(model, x[:64], x[64:], step_fraction=0.25, max_rounds=1, finetune_steps=1,
                                  threshold=1e-9, batch_size=16)
    assert same is model and not rep0["rounds"][1]["accepted"] and rep0["params_after"] == rep0["params_before"]


def test_conv_flatten_dense_chain():
    """conv -> pool -> Flatten -> Dense (the small expression CNN): a channel owns H*W Dense rows."""
    import tf_keras as keras
    keras.utils.set_random_seed(2)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(inp)
    x = L.Flatten(name="flat")(L.MaxPooling2D(name="pool2")(x))
    m = keras.Model(inp, L.Dense(3, name="dense")(x))
    w = m.get_layer("conv2").get_weights()
    w[0][..., 4] = 0.0
    w[1][4] = 0.0
    m.get_layer("conv2").set_weights(w)
    new, keeps = prune_filters(m, remove={"conv2": 1}, pattern=None, min_keep=1)
    assert keeps["conv2"].tolist() == [0, 1, 2, 3, 5]
    assert new.get_layer("dense").get_weights()[0].shape == (4 * 4 * 5, 3)
    x_in = RNG.normal(size=(4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(new(x_in)), np.asarray(m(x_in)), atol=1e-6)
