"""edgeface.nets.grow: a grown MobileNetV2 computes the trained one's function, checked against the
small model's own forward pass; its copies are not symmetric; added blocks can learn."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
import tf_keras as keras
import tensorflow as tf

from edgeface.errors import EdgefaceError
from edgeface.nets.grow import block_groups, distinct_weights, grow_mobilenetv2
from edgeface.nets.mobilenetv2 import mobilenetv2

SMALL = dict(input_size=32, embedding_dim=16, last_channels=48)
STAGES = [(1, 8, 1, 1), (4, 8, 2, 2), (4, 16, 2, 2)]


def _trained_like(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random weights and BatchNorm statistics far from their initial values (so BN matters)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
        elif layer.get_weights():
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("head,last", [("gdconv", 48), ("gap", None)])
def test_grown_model_computes_the_same_function(head, last):
    old = _trained_like(mobilenetv2(**{**SMALL, "last_channels": last}, stages=STAGES, head=head))
    wide_deep = [(1, 16, 1, 1), (4, 16, 4, 2), (6, 24, 3, 2)]  # every stream and inner wider; stages 1-2 deeper
    new = grow_mobilenetv2(old, mobilenetv2(**{**SMALL, "last_channels": last and 80}, stages=wide_deep, head=head))
    assert new.count_params() > 1.5 * old.count_params()
    assert [len(g) for g in block_groups(new)] == [1, 4, 3]
    x = np.random.default_rng(1).uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
    a, b = old(x, training=False).numpy(), new(x, training=False).numpy()
    assert np.abs(a).max() > 1e-2  # a live output, not zeros
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_copies_split_reads_unevenly_and_exactly():
    old = _trained_like(mobilenetv2(**SMALL, stages=STAGES))
    new = grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 2, 2), (8, 16, 2, 2)]), seed=3)
    # block 3 (stage 3's first block) keeps its input width and doubles its inner width: the project conv
    # reads 2x channels whose weights over each old channel's copies sum back to the old weight
    w_old = old.get_layer("block3_project").get_weights()[0]
    w_new = new.get_layer("block3_project").get_weights()[0]
    assert w_new.shape[2] == 2 * w_old.shape[2]
    e_old = old.get_layer("block3_expand").get_weights()[0]
    e_new = new.get_layer("block3_expand").get_weights()[0]
    src = [int(np.argmin(np.abs(e_old - e_new[..., j:j + 1]).sum(axis=(0, 1, 2)))) for j in range(e_new.shape[-1])]
    summed = np.zeros_like(w_old)
    for j, c in enumerate(src):
        summed[:, :, c, :] += w_new[:, :, j, :]
    np.testing.assert_allclose(summed, w_old, rtol=1e-5, atol=1e-6)
    dup = [j for j in range(w_old.shape[2], w_new.shape[2])]
    assert not any(np.allclose(w_new[:, :, j, :], w_new[:, :, src[j], :]) for j in dup)  # symmetry broken


def test_added_block_starts_as_identity_and_can_learn():
    old = _trained_like(mobilenetv2(**SMALL, stages=STAGES))
    new = grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 3, 2), (4, 16, 2, 2)]))
    added = "block3_project"  # stage 2's third block (blocks 1, 2 are its old ones)
    assert not new.get_layer(added).get_weights()[0].any()
    x = tf.constant(np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        y = new(x, training=False)  # BatchNorm frozen, as the distillation recipes run it
        loss = tf.reduce_sum(tf.square(y))
    grad = tape.gradient(loss, new.get_layer(added).kernel)
    assert float(tf.reduce_max(tf.abs(grad))) > 0


def test_refuses_to_narrow_or_change_stages():
    old = mobilenetv2(**SMALL, stages=STAGES)
    with pytest.raises(EdgefaceError, match="never narrows"):
        grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 2, 2), (4, 8, 2, 2)]))
    with pytest.raises(EdgefaceError, match="same stages"):
        grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=STAGES[:2]))
    with pytest.raises(EdgefaceError, match="same stages"):
        grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 1, 2), (4, 16, 2, 2)]))
    with pytest.raises(EdgefaceError, match="keeps the strides"):  # same stages and widths, a stride moved
        grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 2, 2), (4, 16, 2, 1)]))


def test_distinct_weights_measures_the_trained_size():
    """An added block copies its stage's last block with a zero projection: equal buffers, which the converter
    stores once (found when round 11's trained micro file came out 6 KB over its grown model's size)."""
    from edgeface.optimize.tflite_bytes import convert_bytes

    old = _trained_like(mobilenetv2(**SMALL, stages=STAGES))
    new = grow_mobilenetv2(old, mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 4, 2), (4, 16, 4, 2)]))
    trained = _trained_like(mobilenetv2(**SMALL, stages=[(1, 8, 1, 1), (4, 8, 4, 2), (4, 16, 4, 2)]), seed=5)
    distinct = distinct_weights(new)
    reps = np.random.default_rng(3).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    size = {name: len(convert_bytes(m, "float32", reps)) for name, m in
            [("grown", new), ("distinct", distinct), ("trained", trained)]}
    per_block = 4 * (8 * 32 + 9 * 32 + 32 * 8)  # one added 8-wide block's three kernels (float32)
    assert size["grown"] < size["trained"] - per_block  # the naive measure undercounts by blocks
    assert size["distinct"] == size["trained"]
    y = new(reps[:4]).numpy()
    np.testing.assert_allclose(distinct(reps[:4]).numpy(), y, atol=2e-2 * np.abs(y).max())
