"""TFLite Micro export: the C array compiles with gcc and holds exactly NAME_micro/model.tflite (the
.tflite without its bias quantisation once TFLM checks it); the ops resolver and the arena size come
from the model; TFLM runs it like LiteRT does."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.convert.micro import (export_micro, op_names, parse_model, plan_activations, resolver_method,
                                    strip_bias_quantization, tflm_available)

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
    assert back.read_bytes() == (micro / "model.tflite").read_bytes()
    # unchecked by TFLM (measure=False), the array keeps every byte of the .tflite
    assert back.read_bytes() == int8_model.read_bytes() and info["bias_quantization_stripped"] == 0
    header = (micro / "model_data.h").read_text()
    assert f"kModelDataLen = {int8_model.stat().st_size}u" in header
    assert "alignas(16) const unsigned char g_model_data[]" in (micro / "model_data.cc").read_text()


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None, reason="g++/make not installed")
def test_harness_make_check(int8_model, tmp_path):
    """export/micro's documented `make check` (no TFLM checkout needed) passes on a fresh export."""
    export_micro(int8_model, measure=False)
    run = subprocess.run(["make", "-s", "-C", str(HARNESS), "check", f"MODEL={int8_model}", f"BUILD={tmp_path}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    assert "byte-identical" in run.stdout


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


def _conv_bias_channels(data: bytes) -> tuple[int, int]:
    """(conv/depthwise ops with an int32 bias, their output channels), read from the op list."""
    model, schema = parse_model(data)
    sg = model.subgraphs[0]
    convs = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    ops = channels = 0
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) in convs and len(op.inputs) > 2 and op.inputs[2] >= 0:
            ops += 1
            channels += int(sg.tensors[op.inputs[2]].shape[0])
    return ops, channels


def test_strip_bias_quantization_bytes(int8_model):
    """Each conv/depthwise bias loses a float32 scale and an int64 zero point per channel, nothing else."""
    data = int8_model.read_bytes()
    lean, n = strip_bias_quantization(data)
    ops, channels = _conv_bias_channels(data)
    assert n == ops == 2
    saved = len(data) - len(lean)
    assert 12 * channels <= saved <= 12 * channels + 64 * n, (saved, channels)  # + a table and vector headers each
    again, m = strip_bias_quantization(lean)
    assert m == 0 and again == lean
    model, _ = parse_model(lean)
    assert all(t.quantization is not None for t in model.subgraphs[0].tensors if t.type != 2)  # only INT32 biases lose it


def test_shipped_per_tensor_micro_model_has_nothing_to_strip():
    """The shipped micro file has one scale per weight tensor (round 11), so its biases carry one scale each and
    the C array is the file itself."""
    from tests.conftest import REPO
    path = REPO / "models" / "edgeface_face_micro_int8.tflite"
    if not path.is_file():
        pytest.skip("models/edgeface_face_micro_int8.tflite not present")
    data = path.read_bytes()
    lean, n = strip_bias_quantization(data)
    assert n == 0 and lean == data


def test_stripped_face_model_same_outputs_on_real_faces(celeba_root):
    """A trained per-channel int8 face model (the shipped MobileNetV2 student), stripped: bit-identical int8
    outputs on real CelebA faces with LiteRT's own kernels."""
    import cv2
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tests.conftest import REPO
    path = REPO / "models" / "edgeface_face_mnv2_int8.tflite"
    if not path.is_file():
        pytest.skip("models/edgeface_face_mnv2_int8.tflite not present")
    data = path.read_bytes()
    lean, n = strip_bias_quantization(data)
    assert n >= 40 and len(lean) < 0.9 * len(data)
    faces = sorted(celeba_root.rglob("*.jpg"))[:12]
    assert len(faces) == 12

    def outputs(blob):
        it = Interpreter(model_content=blob, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        scale, zero = i["quantization"]
        res = []
        for f in faces:
            x = cv2.cvtColor(cv2.resize(cv2.imread(str(f)), (112, 112)), cv2.COLOR_BGR2RGB).astype(np.float32)
            x = (x - 127.5) / 127.5
            if scale:  # int8 input tensor (the shipped file takes float and quantises inside)
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(i["dtype"])
            it.set_tensor(i["index"], x[None])
            it.invoke()
            res.append(it.get_tensor(o["index"]).copy())
        return np.array(res)
    full, stripped = outputs(data), outputs(lean)
    assert np.array_equal(full, stripped)  # float outputs of the same int8 arithmetic: exactly equal
    assert np.abs(full).max() > 0 and len({r.tobytes() for r in full}) == len(faces)  # a live model
