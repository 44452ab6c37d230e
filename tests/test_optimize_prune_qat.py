"""Magnitude pruning and QAT fine-tuned by self-distillation: sparsity reached, outputs kept,
the QAT model converts to int8, and pruning-preserving QAT keeps the zeros through int8."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from convert_helpers import cached_aligned_dir, cosine_rows

SIZE = 48


@pytest.fixture(scope="module")
def images():
    """Faces at 48x48 (real aligned CelebA crops when present, else noise: the checks are relative)."""
    d = cached_aligned_dir()
    if d is not None:
        from edgeface.data.calibration import load_calibration
        x, _ = load_calibration(d, (SIZE, SIZE, 3), 160, seed=3)
        return x
    return np.random.default_rng(0).uniform(-1, 1, (160, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def embedder(images):
    import tf_keras as keras

    from edgeface.optimize.distill import recalibrate_batchnorm
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(64, 3, strides=2, padding="same", use_bias=False)(x)))
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(32, name="embedding")(x))
    recalibrate_batchnorm(model, images[:64])
    return model


def test_prune_reaches_sparsity_and_keeps_outputs(embedder, images):
    from edgeface.optimize.prune import kernel_sparsity, prune_finetune
    before = [w.copy() for w in embedder.get_weights()]
    pruned, losses = prune_finetune(embedder, images[:128], sparsity=0.5, steps=40, batch_size=16, return_history=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, embedder.get_weights())), "the float model was modified"
    assert type(pruned.layers[1]).__name__ == "Conv2D"  # stripped: plain layers again
    sp = kernel_sparsity(pruned)
    assert 0.45 <= sp["overall"] <= 0.55, sp
    held = images[128:]
    cos = cosine_rows(np.asarray(embedder(held)), np.asarray(pruned(held)))
    assert cos.mean() >= 0.9, cos.mean()
    # the distillation fine-tune beats one-shot magnitude pruning to the same sparsity
    oneshot = _magnitude_prune_copy(embedder, 0.5)
    cos_oneshot = cosine_rows(np.asarray(embedder(held)), np.asarray(oneshot(held)))
    assert cos.mean() > cos_oneshot.mean(), (cos.mean(), cos_oneshot.mean())
    assert len(losses) == 40 and np.isfinite(losses).all()


def _magnitude_prune_copy(model, sparsity):
    """Zero the smallest |w| of every conv/dense kernel, no fine-tune (the baseline)."""
    import tf_keras as keras
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            w = layer.get_weights()
            k = w[0]
            w[0] = np.where(np.abs(k) <= np.quantile(np.abs(k), sparsity), 0.0, k)
            layer.set_weights(w)
    return copy


def test_qat_model_converts_to_int8_close_to_float(embedder, images, tmp_path):
    from edgeface.convert import convert_keras
    from edgeface.nets.io import is_qat_model
    from edgeface.optimize.qat import qat_finetune
    from edgeface.runtime.interpreter import TFLiteModel
    qat = qat_finetune(embedder, images[:128], steps=20, batch_size=16)
    assert is_qat_model(qat) and not is_qat_model(embedder)
    cards = convert_keras(qat, tmp_path, "qat", dtypes=["int8"])  # no calibration: QAT ranges are learned
    assert cards[0]["dtype"] == "int8"
    weights = _conv_weights(tmp_path / "qat_int8.tflite")
    assert len(weights) == 4 and all(t == 9 for t, _ in weights)  # every conv/dense kernel is int8 (TensorType 9)
    held = images[128:]
    got = TFLiteModel(tmp_path / "qat_int8.tflite").run(held)
    assert cosine_rows(np.asarray(embedder(held)), got).mean() >= 0.95


def _conv_weights(path) -> list[tuple[int, np.ndarray]]:
    """(TFLite tensor type, raw bytes as int8) of every CONV_2D / FULLY_CONNECTED weight tensor."""
    from edgeface.convert.micro import parse_model
    model, schema = parse_model(path.read_bytes())
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) in (schema.BuiltinOperator.CONV_2D,
                                                                  schema.BuiltinOperator.FULLY_CONNECTED):
            w = sg.tensors[op.inputs[1]]
            out.append((int(w.type), np.frombuffer(bytes(model.buffers[w.buffer].data), np.int8)))
    return out


def _int8_conv_zero_fraction(path) -> float:
    weights = _conv_weights(path)
    return sum(int(np.sum(d == 0)) for _, d in weights) / sum(d.size for _, d in weights)


def test_prune_preserving_qat_keeps_zeros_in_int8(embedder, images, tmp_path):
    from edgeface.convert import convert_keras
    from edgeface.optimize.prune import prune_finetune
    from edgeface.optimize.qat import qat_finetune
    pruned = prune_finetune(embedder, images[:128], sparsity=0.6, steps=30, batch_size=16)
    qat = qat_finetune(pruned, images[:128], steps=15, batch_size=16, preserve_sparsity=True)
    convert_keras(qat, tmp_path, "pqat", dtypes=["int8"])
    assert _int8_conv_zero_fraction(tmp_path / "pqat_int8.tflite") >= 0.55
