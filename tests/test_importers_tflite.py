"""`edgeface import MODEL.tflite`: a shipped edgeface file back to a trainable Keras model.

The real shipped files, real aligned CelebA faces and the real TFLite interpreter; dequantisation
and the BatchNorm statistics are checked against independent numpy computations.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, aligned_celeba_subset
from edgeface.cli import main

MODELS = REPO / "models"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, celeba_root):
    return aligned_celeba_subset(tmp_path_factory, celeba_root, 3, 4)


def _shipped(name: str) -> Path:
    p = MODELS / f"{name}.tflite"
    if not p.is_file():
        pytest.skip(f"{p.name} not shipped")
    return p


def test_int8_dequantisation_matches_the_float32_sibling():
    from edgeface.importers.tflite import conv_weights

    f32 = conv_weights(_shipped("edgeface_face_mnv2_float32"))
    i8 = conv_weights(_shipped("edgeface_face_mnv2_int8"))
    assert [op for op, _, _ in f32] == [op for op, _, _ in i8]
    for (_, k32, b32), (_, k8, b8) in zip(f32, i8):
        assert k32.shape == k8.shape and b32.shape == b8.shape
        # int8 rounding: each weight within half a step of its channel's scale (absmax / 127)
        axis = tuple(range(k32.ndim - 1)) if k32.shape[-1] > 1 else (0, 1, 3)
        step = np.abs(k32).max(axis=axis, keepdims=True) / 127.0
        assert np.all(np.abs(k8 - k32) <= 0.5 * step + 1e-6)


def test_recovered_micro_model_reproduces_the_file(tmp_path, aligned):
    import tf_keras as keras

    from edgeface.nets.io import load_model
    from edgeface.utils.images import read_image

    src = _shipped("edgeface_face_micro_int8")
    run = tmp_path / "micro"
    assert main(["import", str(src), "--out", str(run), "--faces", str(aligned), "--count", "12"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "recovered" and info["model"]["name"] == "mobilenetv2_micro"
    assert info["verification"]["min_cosine"] >= 0.95  # int8 file against its dequantised float model

    model = load_model(run / "model.keras")
    files = sorted(Path(aligned).glob("*/*.png"))
    x = (np.stack([read_image(f) for f in files]).astype(np.float32) - 127.5) / 127.5
    # every BatchNorm holds the statistics of its convolution's output over these faces (numpy)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    bn = conv._outbound_nodes[0].outbound_layer
    z = np.asarray(keras.Model(model.input, conv.output)(x, training=False), np.float64).reshape(-1, conv.filters)
    gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
    assert np.allclose(mean, z.mean(0), rtol=1e-3, atol=1e-4)
    assert np.allclose(var, z.var(0), rtol=1e-3, atol=1e-4)
    assert np.allclose(gamma, np.sqrt(var + bn.epsilon), rtol=1e-5)
    # so training mode (batch statistics) starts from nearly the same function as inference
    a = np.asarray(model(x, training=False))
    b = np.asarray(model(x, training=True))
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9


def test_an_int8_file_without_a_registered_architecture_is_refused(tmp_path, aligned, capsys):
    # the imported MobileFaceNet: no registry model, so only its float files can be rebuilt from the graph
    src = _shipped("edgeface_face_int8")
    assert main(["import", str(src), "--out", str(tmp_path / "r"), "--faces", str(aligned)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float32 files only" in err[0]
    assert not (tmp_path / "r").exists()


def test_recovered_expression_classifier_reproduces_the_file(tmp_path, expressions_root):
    """The shipped FER2013 classifier (convolutions and its two Dense layers) back to Keras: the same
    class probabilities as the TFLite interpreter on real FER2013 faces preprocessed as the card says."""
    from edgeface.data import expressions as xdata
    from edgeface.nets.io import load_model
    from edgeface.runtime.interpreter import TFLiteModel

    src = _shipped("edgeface_expr_fer_float32")
    fer = expressions_root / "fer2013"
    run = tmp_path / "fer"
    assert main(["import", str(src), "--out", str(run), "--faces", str(fer), "--count", "20"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "recovered" and info["model"]["name"] == "expr_vgg"
    assert info["source"]["convolutions"] == 8 and info["source"]["dense"] == 2
    assert info["verification"]["min_cosine"] >= 0.999

    # independent of the import's own check: other images (the test split), the raw probabilities
    samples = xdata.load_dataset(fer).splits["test"][::200]
    x, _ = xdata.load_images(samples, 48, 1, True)
    xn = (x.astype(np.float32) - 127.5) / 127.5
    want = TFLiteModel(src).run(xn)
    got = np.asarray(load_model(run / "model.keras")(xn, training=False))
    assert got.shape == want.shape == (len(samples), 7)
    assert np.allclose(got, want, atol=1e-4) and np.array_equal(got.argmax(1), want.argmax(1))


def test_dense_count_mismatch_is_refused(tmp_path):
    from edgeface.errors import EdgefaceError
    from edgeface.importers.tflite import load_tflite_dense
    from edgeface.nets import get_model

    src = _shipped("edgeface_expr_fer_float32")
    # the face embedder has no Dense layer; the classifier file has two fully-connected ops
    with pytest.raises(EdgefaceError, match="2 fully-connected ops"):
        load_tflite_dense(get_model("mobilenetv2_micro"), src)
