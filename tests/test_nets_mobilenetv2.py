"""MobileNetV2 embedder: shapes, names, presets' sizes, TF-MOT compatibility, real int8 conversion."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from edgeface.errors import EdgefaceError
from edgeface.nets import get_model, list_models, load_model, save_model
from edgeface.nets.mobilenetv2 import DEFAULT_STAGES, block_plan, describe, estimate_int8_bytes, make_divisible

SMALL = dict(alpha=0.35, last_channels=128)  # fast to build; same topology as the presets
# Every layer kind of the family (expand, depthwise, projection, residual add, last conv, GDConv
# head, embedding) in a few blocks: keeps TF-MOT wrapping and conversion tests quick.
TINY = dict(alpha=0.35, last_channels=64, input_size=96, stages=[(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)])


def _int8_tflite(model: keras.Model, n: int = 4) -> bytes:
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(n):
            yield [rng.uniform(-1, 1, (1, *model.input_shape[1:])).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def test_registry_lists_presets():
    assert {"mobilenetv2", "mobilenetv2_face", "mobilenetv2_micro"} <= set(list_models())


def test_make_divisible():
    assert [make_divisible(v) for v in (5.6, 8.4, 11.2, 22.4, 33.6, 56, 112)] == [8, 8, 16, 24, 32, 56, 112]


@pytest.mark.parametrize("size", [96, 112, 128])
def test_output_shape_and_raw_embedding(size):
    m = get_model("mobilenetv2", input_size=size, embedding_dim=64, **SMALL)
    assert m.input_shape == (None, size, size, 3)
    assert m.output_shape == (None, 64)
    assert m.output.name.startswith("embedding_out") or m.layers[-1].name == "embedding_out"
    y = m(np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32), training=False).numpy()
    assert y.shape == (2, 64)
    # Raw, not L2-normalised inside the graph (the host normalises).
    assert not np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-3)


def test_layer_names_and_residuals():
    m = get_model("mobilenetv2", **SMALL)
    names = {layer.name for layer in m.layers}
    for n in ["stem_conv", "stem_bn", "block0_dw", "block0_dw_bn", "block0_project", "block0_project_bn",
              "block1_expand", "block1_expand_bn", "block2_add", "last_conv", "last_bn", "head_gdconv",
              "head_gdconv_bn", "embedding", "embedding_bn", "embedding_out"]:
        assert n in names, n
    assert "block0_expand" not in names  # t=1: no expansion conv
    adds = [layer.name for layer in m.layers if isinstance(layer, keras.layers.Add)]
    # Seed table: a residual in every repeat after the first of a stage: 0+1+2+3+2+2+0.
    assert len(adds) == sum(n - 1 for _, _, n, _ in DEFAULT_STAGES) == 10
    assert adds == [f"block{i}_add" for i, b in enumerate(block_plan(DEFAULT_STAGES, 0.35)) if b["residual"]]
    # Flat: no nested models, no Lambda/UnitNormalization.
    assert not any(isinstance(layer, (keras.Model, keras.layers.Lambda)) for layer in m.layers)
    # Every conv is followed by a BN (foldable under QAT / int8 conversion).
    for layer in m.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            consumers = [n.outbound_layer for n in layer._outbound_nodes]
            assert len(consumers) == 1 and isinstance(consumers[0], keras.layers.BatchNormalization), layer.name


def test_head_gap_dropout_and_stage_table():
    m = get_model("mobilenetv2", head="gap", dropout=0.2, stages=[(1, 16, 1, 1), (6, 24, 2, 2)], last_channels=None)
    names = [layer.name for layer in m.layers]
    assert "head_gap" in names and "head_dropout" in names and "last_conv" not in names
    assert sum(isinstance(layer, keras.layers.Add) for layer in m.layers) == 1
    assert m.output_shape == (None, 128)
    with pytest.raises(EdgefaceError):
        get_model("mobilenetv2", head="dense")
    with pytest.raises(EdgefaceError):
        get_model("mobilenetv2", input_size=100)


def test_expand_channels_override_narrows_blocks():
    plan = block_plan(DEFAULT_STAGES, 0.35)
    widths = [None if b["expand"] is None else b["expand"] // 2 for b in plan]
    m = get_model("mobilenetv2", expand_channels=widths, **SMALL)
    for i, w in enumerate(widths):
        if w is not None:
            assert m.get_layer(f"block{i}_expand").filters == w
            assert m.get_layer(f"block{i}_dw").output.shape[-1] == w
    full = get_model("mobilenetv2", **SMALL)
    assert m.count_params() < full.count_params()
    with pytest.raises(EdgefaceError):
        get_model("mobilenetv2", expand_channels=[8] * len(plan), **SMALL)  # block 0 has no expansion
    with pytest.raises(EdgefaceError):
        get_model("mobilenetv2", expand_channels=[None, 8], **SMALL)  # wrong length


def _hand_param_count(alpha, stages, last, emb, spatial):
    """Count weights from the architecture definition alone (BN: 4 per channel; no conv biases)."""
    stem = make_divisible(32 * alpha)
    total = 3 * 3 * 3 * stem + 4 * stem
    for b in block_plan(stages, alpha):
        mid = b["in"]
        if b["expand"] is not None:
            mid = b["expand"]
            total += b["in"] * mid + 4 * mid
        total += 9 * mid + 4 * mid + mid * b["out"] + 4 * b["out"]
    c = block_plan(stages, alpha)[-1]["out"]
    total += c * last + 4 * last
    total += spatial * spatial * last + 4 * last + last * emb + 4 * emb
    return total


def test_preset_param_counts():
    face = get_model("mobilenetv2_face")
    micro = get_model("mobilenetv2_micro")
    from edgeface.nets.mobilenetv2 import PRESETS
    assert face.count_params() == _hand_param_count(0.5, DEFAULT_STAGES, 512, 128, 4) == 656_560
    assert micro.count_params() == _hand_param_count(0.35, PRESETS["mobilenetv2_micro"]["stages"], 192, 128, 4)
    assert face.name == "mobilenetv2_face" and face.input_shape == (None, 112, 112, 3)
    assert "est. int8" in describe(face)
    # Overrides win over the preset.
    assert get_model("mobilenetv2_face", embedding_dim=64).output_shape == (None, 64)


def test_tfmot_quantize_and_prune_without_hacks(tmp_path):
    import tensorflow_model_optimization as tfmot

    m = get_model("mobilenetv2", **TINY)
    assert {"block1_expand", "block2_add", "last_conv", "head_gdconv", "embedding"} <= {l.name for l in m.layers}
    x = np.random.default_rng(2).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    q = tfmot.quantization.keras.quantize_model(m)
    assert q(x, training=False).shape == (2, 128)
    from edgeface.nets.io import is_qat_model

    assert is_qat_model(q) and not is_qat_model(m)
    assert not is_qat_model(tfmot.quantization.keras.quantize_annotate_model(m))  # annotated, not yet quantised
    inp = keras.Input(m.input_shape[1:])
    assert is_qat_model(keras.Model(inp, q(inp)))  # a QAT model nested as a layer
    # The QAT graph converts to a fully int8 TFLite file: every BN folded into its conv, no float op.
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    from edgeface.runtime.interpreter import interpreter_class

    interp = interpreter_class()[0](model_content=conv.convert())  # LiteRT: tf.lite.Interpreter is deprecated
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert ops <= {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESHAPE"}, ops
    dtypes = {}
    for o in interp._get_ops_details():
        if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD"):
            dtypes[o["op_name"]] = {interp._get_tensor_details(t, 0)["dtype"] for t in o["inputs"][:2] if t >= 0}
    assert all(d == {np.int8} for d in dtypes.values()), dtypes
    # QAT graphs round-trip through .h5 (the .keras format drops quantizer variables: refused).
    with pytest.raises(EdgefaceError, match=".h5"):
        save_model(q, tmp_path / "qat.keras")
    q2 = load_model(save_model(q, tmp_path / "qat.h5"))
    np.testing.assert_allclose(q2(x, training=False).numpy(), q(x, training=False).numpy(), atol=1e-5)
    p = tfmot.sparsity.keras.prune_low_magnitude(
        m, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0))
    assert p(x, training=False).shape == (2, 128)


def test_save_load_roundtrip(tmp_path):
    m = get_model("mobilenetv2", dropout=0.1, **TINY)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    path = save_model(m, tmp_path / "model.keras")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    from edgeface.utils.io import write_json_atomic

    card = write_json_atomic(tmp_path / "run.json", {})
    assert path.stat().st_mode & 0o777 == card.stat().st_mode & 0o777  # not mkstemp's 0600
    m2 = load_model(path)
    np.testing.assert_allclose(m2(x, training=False).numpy(), m(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(EdgefaceError):
        load_model(tmp_path / "bad.keras")
    with pytest.raises(EdgefaceError):
        load_model(tmp_path / "missing.keras")


@pytest.mark.slow
@pytest.mark.parametrize("preset,budget", [("mobilenetv2_face", 1_000_000), ("mobilenetv2_micro", 300_000)])
def test_preset_int8_tflite_fits_budget(preset, budget, tmp_path):
    m = get_model(preset)
    blob = _int8_tflite(m)
    assert len(blob) <= budget, f"{preset}: {len(blob):,} bytes > {budget:,}"
    # The estimator used to pick widths stays honest.
    assert abs(estimate_int8_bytes(m) - len(blob)) / len(blob) < 0.02
    # Real interpreter runs it: int8 in/out and the right embedding width.
    from edgeface.runtime.interpreter import TFLiteModel
    path = tmp_path / f"{preset}.tflite"
    path.write_bytes(blob)
    out = TFLiteModel(path).run(np.random.default_rng(4).uniform(-1, 1, (1, 112, 112, 3)).astype(np.float32))
    assert np.asarray(out).reshape(-1).shape == (128,)
