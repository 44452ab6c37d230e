"""edgeface.importers.tflite_graph: a float32 .tflite of an unregistered architecture back to Keras.

The shipped pruned MobileFaceNet, real aligned faces and the real interpreter; small graphs made
here with the real converter for the PReLU-split collapse and the refusals.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, aligned_celeba_subset
from edgeface.errors import CheckFailed, EdgefaceError

SHIPPED = REPO / "models" / "edgeface_face_float32.tflite"
CACHED_FACES = REPO / "cache" / "celeba" / "arcface112"
FACES = 20


@pytest.fixture(scope="module")
def faces(tmp_path_factory, request) -> Path:
    """Real aligned 112x112 crops: the recipe's CelebA cache, else 20 CelebA photos aligned here."""
    if len(list(CACHED_FACES.glob("*/*.png"))) >= FACES:
        return CACHED_FACES
    return aligned_celeba_subset(tmp_path_factory, request.getfixturevalue("celeba_root"), 5, 4)


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.name} not shipped")
    from edgeface.importers.tflite_graph import import_tflite_graph

    return import_tflite_graph(SHIPPED)


def _layers(model, kind: str) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


def _tflite(model_or_fn, path: Path) -> Path:
    import tensorflow as tf

    if callable(getattr(model_or_fn, "get_concrete_function", None)):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([model_or_fn.get_concrete_function()], model_or_fn)
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(model_or_fn)
    path.write_bytes(conv.convert())
    return path


def _agreement(model, faces: Path, count: int, bar: float):
    """The importers' own check (edgeface.importers.cli.check_agreement) of `model` against the
    shipped file on real faces, normalised as its card says."""
    from edgeface.importers.cli import check_agreement, verification_faces
    from edgeface.spec import load_card, normalize_pixels
    from edgeface.teachers.base import TFLiteTeacher

    spec = load_card(SHIPPED).input
    crops, files = verification_faces(faces, count, spec.size[0])
    ref = TFLiteTeacher(SHIPPED).embed(crops)
    return check_agreement(model, normalize_pixels(crops, spec.mean, spec.std), ref, files, bar, SHIPPED.name)


def test_shipped_float32_imports_to_the_same_function(shipped, faces):
    from edgeface.importers.tflite_graph import read_graph

    assert _agreement(shipped, faces, FACES, 0.9999).min() >= 0.9999
    prelu_ops = sum(op["op_name"] == "PRELU" for op in read_graph(SHIPPED).ops)
    assert len(_layers(shipped, "PReLU")) == prelu_ops == 33
    assert not _layers(shipped, "LeakyReLU")


def test_shipped_import_takes_equalisation_and_surgery(shipped):
    from edgeface.optimize.equalize import scale_points
    from edgeface.optimize.surgery import all_groups

    assert len(scale_points(shipped)) > 0
    assert len(all_groups(shipped)) > 0
    # the layer names come from the file's tensor names
    assert "conv_1_conv2d" in [layer.name for layer in shipped.layers]


def test_verification_refuses_a_model_that_differs(shipped, faces):
    dense = _layers(shipped, "Dense")[0]
    kept = dense.get_weights()
    rng = np.random.default_rng(0)
    try:
        dense.set_weights([kept[0] + rng.normal(0, 0.5 * kept[0].std(), kept[0].shape).astype(np.float32), kept[1]])
        with pytest.raises(CheckFailed, match=f"import refused: lowest cosine to {SHIPPED.name}"):
            _agreement(shipped, faces, 4, 0.999)
    finally:
        dense.set_weights(kept)


def _small_prelu_net():
    import edgeface  # noqa: F401
    import tf_keras as keras

    L = keras.layers
    rng = np.random.default_rng(1)
    inp = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same")(inp)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.Flatten()(x)
    model = keras.Model(inp, L.Dense(5)(x))
    for layer in _layers(model, "PReLU"):
        layer.set_weights([rng.uniform(-0.5, 1.5, (1, 1, 8)).astype(np.float32)])
    return model


def test_split_prelu_round_trips_as_prelu(tmp_path):
    from edgeface.importers.tflite_graph import count_prelu_splits, import_tflite_graph
    from edgeface.nets import load_model, save_model
    from edgeface.optimize.equalize import split_prelu

    original = _small_prelu_net()
    path = _tflite(split_prelu(original), tmp_path / "split.tflite")
    model = import_tflite_graph(path)

    assert count_prelu_splits(path) == 2 == len(_layers(model, "PReLU"))
    assert not _layers(model, "LeakyReLU")
    for want, got in zip(_layers(original, "PReLU"), _layers(model, "PReLU")):
        assert got.shared_axes == [1, 2]
        np.testing.assert_allclose(got.get_weights()[0], want.get_weights()[0], atol=1e-6)
    (conv,) = _layers(model, "Conv2D")
    assert conv.strides == (2, 2) and conv.padding == "same"
    x = np.random.default_rng(2).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), original(x), atol=1e-4)
    save_model(model, tmp_path / "model.keras")  # the run folder's format: it must reload
    np.testing.assert_allclose(load_model(tmp_path / "model.keras")(x), original(x), atol=1e-4)


def test_a_split_whose_kernels_do_not_sum_to_one_is_kept(tmp_path):
    from edgeface.importers.tflite_graph import import_tflite_graph
    from edgeface.optimize.equalize import split_prelu

    split = split_prelu(_small_prelu_net())
    for layer in _layers(split, "DepthwiseConv2D"):
        if layer.kernel_size == (1, 1):  # c1, c2 of each split: now c1 + c2 != 1
            layer.set_weights([layer.get_weights()[0] * 1.5])
    model = import_tflite_graph(_tflite(split, tmp_path / "not_prelu.tflite"))

    assert not _layers(model, "PReLU")
    assert [layer.alpha for layer in _layers(model, "LeakyReLU")] == [-1.0, -1.0]
    x = np.random.default_rng(3).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), split(x), atol=1e-4)


def test_an_unsupported_op_is_one_line_naming_it(tmp_path):
    import tensorflow as tf

    from edgeface.importers.tflite_graph import import_tflite_graph

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def sine(x):
        return tf.math.sin(x) * 2.0

    path = _tflite(sine, tmp_path / "sine.tflite")
    with pytest.raises(EdgefaceError) as e:
        import_tflite_graph(path)
    assert "unsupported TFLite op SIN" in str(e.value) and "\n" not in str(e.value)


def test_a_quantised_file_is_refused():
    from edgeface.importers.tflite_graph import import_tflite_graph

    int8 = REPO / "models" / "edgeface_face_micro_int8.tflite"
    if not int8.is_file():
        pytest.skip(f"{int8.name} not shipped")
    with pytest.raises(EdgefaceError, match="float32 files only"):
        import_tflite_graph(int8)


def test_the_other_supported_ops_round_trip(tmp_path):
    """Fused RELU/RELU6, a depth multiplier, per-channel MUL/ADD (a lone BatchNorm), MEAN,
    FULLY_CONNECTED on a flattened map and L2_NORMALIZATION."""
    import edgeface  # noqa: F401
    import tf_keras as keras

    from edgeface.importers.tflite_graph import import_tflite_graph, read_graph

    L = keras.layers
    rng = np.random.default_rng(4)
    inp = L.Input((12, 12, 4))
    x = L.Conv2D(6, 3, activation="relu6")(inp)
    x = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu")(x)
    x = L.LeakyReLU(0.1)(L.ReLU()(L.BatchNormalization()(L.Add()([x, x]))))
    x = L.Add()([L.GlobalAveragePooling2D()(x), L.Dense(12)(L.Flatten()(x))])
    original = keras.Model(inp, L.UnitNormalization()(x))
    bn = _layers(original, "BatchNormalization")[0]
    bn.set_weights([rng.uniform(0.5, 2, 12).astype(np.float32), rng.normal(0, 1, 12).astype(np.float32),
                    rng.normal(0, 1, 12).astype(np.float32), rng.uniform(0.5, 2, 12).astype(np.float32)])
    path = _tflite(original, tmp_path / "ops.tflite")
    assert {"MUL", "MEAN", "L2_NORMALIZATION", "FULLY_CONNECTED"} <= {op["op_name"] for op in read_graph(path).ops}

    model = import_tflite_graph(path)
    assert [layer.max_value for layer in _layers(model, "ReLU")][0] == 6.0
    assert _layers(model, "DepthwiseConv2D")[0].depth_multiplier == 2
    x = rng.uniform(-1, 1, (3, 12, 12, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x), original(x), atol=1e-5)


def test_a_float16_file_imports_with_its_weights_as_float32(tmp_path):
    import tensorflow as tf

    from edgeface.importers.tflite_graph import import_tflite_graph
    from edgeface.optimize.equalize import split_prelu

    split = split_prelu(_small_prelu_net())
    conv = tf.lite.TFLiteConverter.from_keras_model(split)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    path = tmp_path / "f16.tflite"
    path.write_bytes(conv.convert())
    model = import_tflite_graph(path)

    assert len(_layers(model, "PReLU")) == 2  # the collapse sees through the DEQUANTIZEs
    x = np.random.default_rng(5).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), split(x), atol=2e-2)  # float16 weight rounding


def test_edgeface_import_falls_back_to_the_graph_for_an_unregistered_architecture(tmp_path, faces):
    """`edgeface import` on the shipped pruned MobileFaceNet (card: imported-ncnn, no registered
    architecture) rebuilds it from its graph and records an importable run for convert."""
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.name} not shipped")
    from edgeface.cli import main
    from edgeface.utils.io import read_json

    run = tmp_path / "run"
    assert main(["import", str(SHIPPED), "--out", str(run), "--faces", str(faces), "--count", "12"]) == 0
    info = read_json(run / "run.json")
    assert info["kind"] == "imported" and info["source"]["format"] == "tflite-graph"
    assert info["verification"]["min_cosine"] >= 0.999 and info["verification"]["faces"] == 12
    assert "non-commercial" in info["license"]
