"""activation.swap_prelu and equalize.rebuild: the per-layer LeakyReLU slope against an
independent numpy computation, exactness where a layer's slopes are all equal, and the ReLU form."""
from __future__ import annotations

import numpy as np
import pytest


def _net(slopes, embed: bool = False):
    """conv -> PReLU -> (depthwise -> conv: a feature map, or GAP -> dense: an 8-d embedding)."""
    import tf_keras as keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = L.Input((12, 12, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.PReLU(shared_axes=[1, 2], name="p1")(x)
    if embed:
        out = L.Dense(8, name="emb")(L.GlobalAveragePooling2D()(x))
    else:
        out = L.Conv2D(4, 1, name="c2")(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    model = keras.Model(inp, out)
    model.get_layer("p1").set_weights([np.asarray(slopes, np.float32).reshape(1, 1, -1)])
    return model


def _x(n=16):
    return np.random.default_rng(1).normal(size=(n, 12, 12, 3)).astype(np.float32)


def test_leaky_slope_is_the_negative_energy_weighted_mean():
    import tf_keras as keras

    from edgeface.optimize.activation import leaky_alphas

    slopes = np.array([-0.5, 0.0, 0.1, 0.25, 0.9, 1.6])
    model, x = _net(slopes), _x()
    pre = np.asarray(keras.Model(model.inputs, model.get_layer("c1").output)(x)).reshape(-1, 6)
    e = (np.where(pre < 0, pre, 0.0) ** 2).mean(0)  # independent: per-channel energy of the negative part
    assert leaky_alphas(model, x)["p1"] == pytest.approx(float((slopes * e).sum() / e.sum()), rel=1e-4)


def test_leaky_swap_is_exact_when_a_layers_slopes_are_equal_and_relu_swap_uses_relu():
    import tf_keras as keras

    from edgeface.optimize.activation import swap_prelu

    x = _x()
    model = _net([0.2] * 6)
    leaky, alphas = swap_prelu(model, "leaky", x)
    assert alphas == {"p1": pytest.approx(0.2, abs=1e-6)}
    assert not any(isinstance(l, keras.layers.PReLU) for l in leaky.layers)
    np.testing.assert_allclose(np.asarray(leaky(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)

    relu, _ = swap_prelu(_net([0.0] * 6), "relu")  # slope 0 everywhere: ReLU is the same function
    assert any(isinstance(l, keras.layers.ReLU) for l in relu.layers)
    np.testing.assert_allclose(np.asarray(relu(x)), np.asarray(_net([0.0] * 6)(x)), rtol=1e-5, atol=1e-5)
    assert swap_prelu(model, "prelu")[0] is model


def test_swap_refuses_unknown_kind_and_leaky_without_inputs():
    from edgeface.errors import EdgefaceError
    from edgeface.optimize.activation import swap_prelu

    with pytest.raises(EdgefaceError, match="unknown activation"):
        swap_prelu(_net([0.1] * 6), "gelu")
    with pytest.raises(EdgefaceError, match="calibration inputs"):
        swap_prelu(_net([0.1] * 6), "leaky")


def test_rebuild_copies_the_function_with_compact_names():
    from edgeface.optimize.equalize import rebuild

    model, x = _net([-0.3, 0.1, 0.2, 0.5, 0.7, 1.2]), _x()
    copy = rebuild(model)
    assert all(l.name == "input" or (l.name[0] == "l" and l.name[1:].isdigit()) for l in copy.layers)
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)


def test_slope_anneal_shrinks_slopes_on_schedule_during_recovery_and_ends_as_relu():
    import tf_keras as keras

    from edgeface.errors import EdgefaceError
    from edgeface.optimize.activation import SlopeAnneal, swap_prelu
    from edgeface.optimize.compress import Faces, recover

    slopes = np.array([-0.5, 0.0, 0.1, 0.25, 0.9, 1.6], np.float32)
    x = _x(64)
    targets = Faces.from_model(_net(-slopes, embed=True), x)  # a different function: the student must move
    student = _net(slopes, embed=True)
    conv_before = student.get_layer("c1").get_weights()[0].copy()
    anneal = SlopeAnneal(student, 4)
    seen = []

    def on_step(step):
        anneal(step)
        seen.append(student.get_layer("p1").get_weights()[0].reshape(-1).copy())

    recover(student, targets, 6, batch_size=8, lr=1e-2, on_step=on_step)
    for step, got in enumerate(seen):  # independent: a0 * max(0, 1 - (k + 1) / 4), untouched by Adam
        np.testing.assert_allclose(got, slopes * max(0.0, 1 - (step + 1) / 4), rtol=1e-6, atol=1e-7)
    assert [anneal.finished(n) for n in range(1, 7)] == [False, False, False, True, True, True]
    # the best model: nothing before the anneal ends; the first check after it beats any earlier best
    assert not anneal.keeps(3, 0.0, 1.0, 0)
    assert anneal.keeps(4, 0.5, 0.1, 2) and not anneal.keeps(6, 0.5, 0.1, 4) and anneal.keeps(6, 0.05, 0.1, 4)
    assert not np.allclose(student.get_layer("c1").get_weights()[0], conv_before)  # the rest trained
    relu, _ = swap_prelu(student, "relu")
    assert not any(isinstance(l, keras.layers.PReLU) for l in relu.layers)
    np.testing.assert_allclose(np.asarray(relu(x)), np.asarray(student(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(EdgefaceError, match="no PReLU"):
        SlopeAnneal(relu, 4)
