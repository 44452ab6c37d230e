"""`edgeface convert` failures: one line on stderr, the right exit code, nothing half-done left behind."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.cli import main
from edgeface.utils.images import write_image


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    """A tiny conv embedder saved as .keras (converts in a few seconds)."""
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(16)(x)
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    keras.Model(inp, out).save(path)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("edgeface: error: ") and "Traceback" not in err[0]
    return err[0]


def test_over_budget_exits_1_and_keeps_the_existing_artifact(tiny_keras, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    # what was there (with --out models that is the shipped model) must stay byte-identical
    (out / "tiny_float32.tflite").write_bytes(b"good artifact from an earlier run")
    (out / "tiny_float32.json").write_text('{"name": "tiny_float32"}')
    rc = main(["convert", str(tiny_keras), "--out", str(out), "--dtypes", "float32", "--budget", "1000"])
    assert rc == 1
    line = _one_line_error(capsys)
    assert "budget" in line and "tiny_float32.tflite" in line and "unchanged" in line
    assert (out / "tiny_float32.tflite").read_bytes() == b"good artifact from an earlier run"
    assert (out / "tiny_float32.json").read_text() == '{"name": "tiny_float32"}'
    aside = out / "tiny_float32.tflite.over-budget"
    assert aside.stat().st_size > 1000 and aside.read_bytes()[4:8] == b"TFL3"


def test_within_budget_dynamic_converts(tiny_keras, tmp_path, capsys):
    rc = main(["convert", str(tiny_keras), "--out", str(tmp_path), "--dtypes", "dynamic", "--budget", "100000"])
    assert rc == 0
    import json
    card = json.loads((tmp_path / "tiny_dynamic.json").read_text())
    assert card["dtype"] == "dynamic" and card["bytes"] <= 100000 and card["budget_bytes"] == 100000


def test_unreadable_model(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a keras zip")
    assert main(["convert", str(bad), "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert "broken.keras" in line and ("not a Keras model" in line or "cannot load" in line)
    assert main(["convert", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in _one_line_error(capsys)
    (tmp_path / "run").mkdir()
    assert main(["convert", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    assert "run.json" in _one_line_error(capsys)


def test_wrong_calibration_input_shape(tiny_keras, tmp_path, capsys):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((4, 20, 20, 3), np.float32))
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "int8", "--calib", str(calib)]) == 2
    assert "shape" in _one_line_error(capsys)
    # images whose aspect ratio is not the model's: not crops aligned for this model
    for i in range(3):
        write_image(tmp_path / "wide" / f"{i}.png", np.full((32, 64, 3), 100, np.uint8))
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "int8",
                 "--calib", str(tmp_path / "wide")]) == 2
    assert "wrong input shape of calibration data" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.tflite"))


def test_missing_calibration_data(tiny_keras, tmp_path, capsys):
    # a bare Keras file has no run.json training dir to fall back on
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "int8"]) == 2
    assert "calibration" in _one_line_error(capsys)
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "int8",
                 "--calib", str(tmp_path / "nowhere")]) == 2
    assert "calibration data not found" in _one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "int8",
                 "--calib", str(tmp_path / "empty")]) == 2
    assert "no calibration images" in _one_line_error(capsys)


def test_refuses_lfw_calibration(tiny_keras, tmp_path, capsys):
    lfw = tmp_path / "LFW_aligned"
    write_image(lfw / "a" / "a.png", np.zeros((32, 32, 3), np.uint8))
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--calib", str(lfw)]) == 2
    assert "LFW is evaluation-only" in _one_line_error(capsys)


def test_tta_is_for_expression_classifiers(tiny_keras, tmp_path, capsys):
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "m"), "--dtypes", "float32", "--tta", "ten"]) == 2
    assert "--tta is for expression classifiers" in _one_line_error(capsys)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_unknown_dtype(tiny_keras, tmp_path, capsys):
    assert main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "float32,int4"]) == 2
    assert "int4" in _one_line_error(capsys)


def test_convert_keras_rejects_bad_representative(tiny_keras, tmp_path):
    import tf_keras as keras

    from edgeface.convert import convert_keras
    from edgeface.errors import EdgefaceError
    model = keras.models.load_model(tiny_keras, compile=False)
    with pytest.raises(EdgefaceError, match="expects"):
        convert_keras(model, tmp_path, "m", dtypes=["int8"], representative=np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(EdgefaceError, match="empty"):
        convert_keras(model, tmp_path, "m", dtypes=["int8"], representative=[])
    assert not list(tmp_path.glob("*.tflite"))


def test_prune_and_qat_flags_produce_a_sparse_int8(tiny_keras, tmp_path, capsys):
    import json
    rng = np.random.default_rng(0)
    for i in range(24):
        write_image(tmp_path / "train" / f"id{i % 3}" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    rc = main(["convert", str(tiny_keras), "--out", str(tmp_path / "o"), "--dtypes", "float32,int8",
               "--calib", str(tmp_path / "train"), "--calib-count", "16", "--finetune-count", "24",
               "--prune", "0.5", "--prune-steps", "4", "--qat-finetune", "3"])
    assert rc == 0, capsys.readouterr().err
    f32 = json.loads((tmp_path / "o" / "tiny_float32.json").read_text())
    int8 = json.loads((tmp_path / "o" / "tiny_int8.json").read_text())
    assert f32["optimization"]["prune"]["target_sparsity"] == 0.5
    assert f32["optimization"]["prune"]["kernel_sparsity"] >= 0.45
    assert int8["optimization"]["qat"]["scheme"] == "Default8BitPrunePreserveQuantizeScheme"
    assert int8["calibration"]["count"] == 16 and int8["calibration"]["dir"] == "train"


def test_per_tensor_and_int8_io(tiny_keras, tmp_path, capsys):
    """--per-tensor drops the per-channel scales (a smaller file); --int8-io makes the I/O int8, and the
    card carries the real input/output quantisation read back from the interpreter."""
    import json

    from edgeface.runtime.interpreter import TFLiteModel
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32))
    sizes = {}
    for flag in ("", "--per-tensor"):
        out = tmp_path / (flag or "pc")
        args = ["convert", str(tiny_keras), "--out", str(out), "--dtypes", "int8", "--calib", str(calib), "--int8-io"]
        assert main(args + ([flag] if flag else [])) == 0
        card = json.loads((out / "tiny_int8.json").read_text())
        sizes[flag] = card["bytes"]
        assert card["converter"]["per_channel"] is (flag == "")
        m = TFLiteModel(out / "tiny_int8.tflite")
        scale, zp = m.input["quantization"]
        assert card["input"]["dtype"] == "int8" and card["output"]["dtype"] == "int8"
        assert card["input"]["quantization"] == {"scale": pytest.approx(scale), "zero_point": zp}
        assert card["calibration"]["dir"] == calib.name and card["calibration"]["count"] == 16
    assert sizes["--per-tensor"] < sizes[""]


def test_strip_strings_keeps_the_function(tiny_keras, tmp_path):
    """--strip-strings: a smaller file without tensor names whose outputs equal the named file's."""
    import json

    from edgeface.runtime.interpreter import TFLiteModel
    calib = tmp_path / "calib.npy"
    x = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    np.save(calib, x)
    outs, sizes = {}, {}
    for flag in ("", "--strip-strings"):
        out = tmp_path / (flag or "named")
        assert main(["convert", str(tiny_keras), "--out", str(out), "--dtypes", "int8,float32", "--calib", str(calib)]
                    + ([flag] if flag else [])) == 0
        for dtype in ("int8", "float32"):
            card = json.loads((out / f"tiny_{dtype}.json").read_text())
            assert card["converter"]["strings_stripped"] is (flag != "")
            sizes[flag, dtype] = (out / f"tiny_{dtype}.tflite").stat().st_size
            m = TFLiteModel(out / f"tiny_{dtype}.tflite")
            outs[flag, dtype] = np.concatenate([m.run(x[i:i + 1]) for i in range(4)])
            names = [t["name"] for t in m.interpreter.get_tensor_details()]
            assert all(n == "" for n in names) is (flag != "")
    for dtype in ("int8", "float32"):
        assert sizes["--strip-strings", dtype] < sizes["", dtype]
        assert np.array_equal(outs["--strip-strings", dtype], outs["", dtype])
