"""Expression models: registry, flat graphs, the frozen base, the ImageNet pixel adapter, face transfer."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.errors import EdgefaceError
from edgeface.nets import get_model, list_models
from edgeface.nets import expression as xnets


def test_all_backbones_are_registered():
    for name in ("expr_mobilenetv2", "expr_resnet50", "expr_vgg16", "expr_densenet121", "expr_cnn", "expr_vgg"):
        assert name in list_models()


@pytest.mark.parametrize("name,kw", [("expr_cnn", {"input_size": 48, "channels": 1}),
                                     ("expr_vgg", {"input_size": 48, "channels": 1, "filters": [[8], [16, 16]]}),
                                     ("expr_mobilenetv2", {"input_size": 48}),
                                     ("expr_vgg16", {"input_size": 32})])
def test_models_are_flat_classifiers(name, kw):
    import tf_keras as keras
    m = get_model(name, num_classes=5, head_units=16, **kw)
    assert not any(isinstance(l, keras.Model) for l in m.layers)  # flat: TF-MOT / converter see every layer
    x = np.random.default_rng(0).uniform(-1, 1, (3, *m.input_shape[1:])).astype(np.float32)
    p = m.predict_on_batch(x)
    assert p.shape == (3, 5)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert m.get_layer(xnets.HIDDEN_LAYER).units == 16


def test_frozen_base_and_top_block_fine_tuning():
    m = get_model("expr_mobilenetv2", num_classes=7, input_size=48)
    assert xnets.set_base_trainable(m, 0) == 0
    trainable = {w.name for w in m.trainable_weights}
    assert trainable and all("head_" in n for n in trainable)
    n = xnets.set_base_trainable(m, 2)
    names = [l.name for l in m.layers if l.trainable and not l.name.startswith("head_") and l.weights]
    assert n > 0 and names and all(k.startswith(("block_15", "block_16", "Conv_1", "out_relu")) for k in names)
    assert not any(l.trainable for l in m.layers if isinstance(l, __import__("tf_keras").layers.BatchNormalization))


@pytest.mark.parametrize("mode,preprocess", [("caffe", "resnet50"), ("torch", "densenet")])
def test_imagenet_adapter_matches_keras_preprocess_input(mode, preprocess):
    import tf_keras as keras
    inp = keras.Input((8, 8, 3))
    adapter = keras.Model(inp, xnets._imagenet_adapter(inp, mode, 3))
    rgb = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    ours = adapter.predict_on_batch((rgb - 127.5) / 127.5)
    ref = getattr(keras.applications, preprocess).preprocess_input(rgb.copy())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)


def test_transfer_from_a_face_model_keeps_its_weights(tmp_path):
    face = get_model("mobilenetv2", input_size=48, alpha=0.35, embedding_dim=32, last_channels=64)
    path = tmp_path / "face.keras"
    face.save(path)
    m = get_model("expr_mobilenetv2", num_classes=7, weights=str(path))
    assert m.input_shape[1:] == (48, 48, 3)
    assert not any(l.name.startswith("embedding") for l in m.layers)  # the face head is cut off
    for layer_name in ("stem_conv", "block5_expand", "last_conv"):
        for a, b in zip(m.get_layer(layer_name).get_weights(), face.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(EdgefaceError, match="input"):
        get_model("expr_mobilenetv2", num_classes=7, weights=str(path), input_size=96)


def test_bad_arguments_fail_with_one_line(tmp_path):
    with pytest.raises(EdgefaceError, match="num_classes"):
        get_model("expr_cnn", num_classes=1)
    with pytest.raises(EdgefaceError, match="not found"):
        get_model("expr_resnet50", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(EdgefaceError, match="channels=3"):
        get_model("expr_vgg16", weights="imagenet", channels=1)


def test_vgg_blocks_follow_filters_and_reject_bad_ones():
    m = get_model("expr_vgg", num_classes=7, filters=[[8, 8], [16], [32]], head_units=12, block_dropout=0.1)
    convs = [l for l in m.layers if l.name.startswith("block") and "_conv" in l.name]
    assert [l.filters for l in convs] == [8, 8, 16, 32] and m.get_layer("block3_pool").output.shape[1] == 6
    assert m.input_shape == (None, 48, 48, 1)
    with pytest.raises(EdgefaceError):
        get_model("expr_vgg", filters=[[]])
    with pytest.raises(EdgefaceError):
        get_model("expr_vgg", weights="imagenet")
