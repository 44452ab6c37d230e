"""TFLite Micro export: the C array compiles with gcc and holds exactly the .tflite bytes; the ops
resolver and the arena size come from the model; TFLM runs it like LiteRT does."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.convert.micro import export_micro, op_names, plan_activations, resolver_method, tflm_available

HARNESS = Path(__file__).resolve().parents[1] / "export" / "micro"


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """A tiny int8 model with conv, depthwise, add, mean and fully-connected ops, and its card."""
    import tf_keras as keras

    from edgeface.convert import convert_keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(16)(x))
    reps = np.random.default_rng(0).uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32)
    out = tmp_path_factory.mktemp("micro")
    convert_keras(model, out, "tiny", dtypes=["int8"], representative=reps)
    return out / "tiny_int8.tflite"


def test_resolver_method_names():
    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert resolver_method("AVERAGE_POOL_2D") == "AddAveragePool2D"
    assert resolver_method("L2_NORMALIZATION") == "AddL2Normalization"
    assert resolver_method("RELU6") == "AddRelu6" and resolver_method("PADV2") == "AddPadV2"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_c_array_compiles_and_equals_tflite(int8_model, tmp_path):
    info = export_micro(int8_model, measure=False)
    micro = int8_model.with_name("tiny_int8_micro")
    assert info["dir"] == micro.name and {p.name for p in micro.iterdir()} == set(info["files"])
    exe = tmp_path / "check_model_data"
    subprocess.run(["g++", "-std=c++17", "-O0", "-Wall", "-Werror", f"-I{micro}", str(HARNESS / "check_model_data.cc"),
                    str(micro / "model_data.cc"), "-o", str(exe)], check=True, capture_output=True, timeout=300)
    back = tmp_path / "roundtrip.tflite"
    subprocess.run([str(exe), str(back)], check=True, capture_output=True, timeout=60)
    assert back.read_bytes() == int8_model.read_bytes()
    header = (micro / "model_data.h").read_text()
    assert f"kModelDataLen = {int8_model.stat().st_size}u" in header
    assert "alignas(16) const unsigned char g_model_data[]" in (micro / "model_data.cc").read_text()


def test_ops_resolver_lists_the_model_ops(int8_model):
    info = export_micro(int8_model, measure=False)
    ops = op_names(int8_model.read_bytes())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(ops)
    text = (int8_model.with_name("tiny_int8_micro") / "ops_resolver.h").read_text()
    assert f"constexpr int kEdgefaceNumOps = {len(ops)};" in text
    for op in ops:
        assert f"resolver.{resolver_method(op)}()" in text
    card = json.loads(int8_model.with_suffix(".json").read_text())
    assert card["micro"]["ops"] == ops and card["micro"]["arena_bytes"] == info["arena_bytes"]
    assert card["micro"]["arena_method"].startswith("estimated")  # measure=False: the greedy plan


def test_greedy_plan_bounds():
    """A two-op chain: the plan is the two live tensors at the widest point, never more than their sum."""
    import tf_keras as keras

    from edgeface.optimize.tflite_bytes import convert_bytes
    inp = keras.Input((16, 16, 4))
    x = keras.layers.Conv2D(8, 1)(inp)
    out = keras.layers.Conv2D(2, 1)(x)
    data = convert_bytes(keras.Model(inp, out), "float32")
    plan = plan_activations(data)
    sizes = [16 * 16 * 4 * 4, 16 * 16 * 8 * 4, 16 * 16 * 2 * 4]  # float32 in, hidden, out
    # the hidden tensor is live with the input (op 0) and with the output (op 1): never all three
    assert plan["planned_bytes"] == max(sizes[0] + sizes[1], sizes[1] + sizes[2])


@pytest.mark.skipif(not tflm_available(), reason="tflite-micro Python package not installed")
def test_tflm_measures_arena_and_matches_litert(int8_model):
    from edgeface.runtime.interpreter import TFLiteModel
    info = export_micro(int8_model, measure=True)
    assert info["arena_method"].startswith("measured"), info["arena_method"]
    tflm = info["tflm"]
    assert tflm["arena_bytes"] >= tflm["head_bytes"] > 0
    # our planner reproduces TFLM's activation plan (its "head") to within 10%
    assert abs(info["planned_activation_bytes"] - tflm["head_bytes"]) <= 0.1 * tflm["head_bytes"]
    # same seeded input as the TFLM subprocess: the two interpreters agree
    m = TFLiteModel(int8_model)
    x = np.random.default_rng(0).uniform(-1, 1, m.input_shape).astype(np.float32)
    ref = m.run(x)[0]
    got = np.asarray(info["tflm_output"], np.float32)
    cos = float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert cos >= 0.999, cos
