"""`edgeface convert` end to end on a small MobileNetV2 embedder: three real .tflite files, their
cards, their sizes, and embeddings that agree with the Keras model on real aligned faces."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401
from convert_helpers import (N_FACES, align_celeba, cached_aligned_dir, cosine_rows, load_faces, small_embedder,
                             synthetic_faces_dir)
from edgeface.cli import main
from edgeface.utils.io import sha256_file, write_json_atomic
from edgeface.utils.paths import shared_data

DTYPES = ("float32", "float16", "int8")
CARD_KEYS = {"name", "task", "file", "bytes", "sha256", "dtype", "input", "output", "source", "calibration",
             "converter", "budget_bytes", "training_data", "teacher", "license"}


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """(calibration/training faces folder, evaluation faces folder, 'real' | 'synthetic')."""
    d = cached_aligned_dir()
    if d is not None:  # thousands of crops: calibration and evaluation use different seeded samples
        return d, d, "real"
    root = shared_data()
    if root is not None and (root / "faces" / "celeba").is_dir():
        celeba = root / "faces" / "celeba"  # disjoint identities for calibration and evaluation
        return (align_celeba(celeba, tmp_path_factory.mktemp("aligned_train"), 32, first_identity=0),
                align_celeba(celeba, tmp_path_factory.mktemp("aligned_eval"), 24, first_identity=100), "real")
    d = synthetic_faces_dir(tmp_path_factory.mktemp("synthetic"))
    return d, d, "synthetic"


@pytest.fixture(scope="module")
def converted(faces, tmp_path_factory):
    """A run directory converted by the CLI with the run's own training dir as calibration source."""
    faces_dir, eval_dir, kind = faces
    from edgeface.data.calibration import load_calibration

    bn_faces, _ = load_calibration(faces_dir, (112, 112, 3), N_FACES, seed=2)
    model = small_embedder(bn_faces)
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.keras")
    write_json_atomic(run / "run.json", {"task": "face_embedding", "model": {"name": "mobilenetv2"},
                                         "data": {"dir": str(faces_dir)}, "teacher": None,
                                         "config": {"note": "test run"}})
    out = tmp_path_factory.mktemp("models")
    rc = main(["convert", str(run), "--out", str(out), "--name", "face", "--calib-count", "64"])
    assert rc == 0
    return {"model": model, "out": out, "run": run, "faces_dir": faces_dir, "eval_dir": eval_dir, "kind": kind}


def _card(out, dtype):
    return json.loads((out / f"face_{dtype}.json").read_text())


def test_cards_written_and_correct(converted):
    out = converted["out"]
    for dtype in DTYPES:
        path = out / f"face_{dtype}.tflite"
        card = _card(out, dtype)
        assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
        assert card["file"] == path.name and card["dtype"] == dtype and card["task"] == "face_embedding"
        assert card["bytes"] == path.stat().st_size
        assert card["sha256"] == sha256_file(path)
        assert card["input"]["shape"] == [1, 112, 112, 3] and card["input"]["color"] == "RGB"
        assert card["input"]["normalization"] == {"mean": 127.5, "std": 127.5}
        assert card["input"]["alignment"] == "arcface112"
        assert card["output"]["embedding_dim"] == 64 and card["output"]["l2_normalized"] is False
        # a folder outside any checkout is recorded by its name: no path of this machine in a card
        assert card["source"]["run_dir"] == converted["run"].name and '"/' not in json.dumps(card)
        # The default 1 MB promise is the int8 embedder's; float files are reference artifacts.
        assert card["budget_bytes"] == (1_000_000 if dtype == "int8" else None)
        assert all(card["converter"][k] for k in ("tensorflow", "tf_keras", "tfmot"))
        assert "CONV_2D" in card["ops"]
    int8 = _card(out, "int8")
    # calibration came from the run's training dir (run.json), 64 images, fixed seed
    assert Path(int8["calibration"]["dir"]).name == converted["faces_dir"].name  # stored relative to the cwd
    assert int8["calibration"]["count"] == min(64, len(list(converted["faces_dir"].rglob("*.png"))))
    assert int8["input"]["dtype"] == "float32" and int8["input"]["quantization"] is None  # float I/O by default
    assert _card(out, "float32")["calibration"] is None
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def _weight_bytes(path):
    """Bytes of constant tensor data (weights) inside a .tflite."""
    from edgeface.convert.micro import parse_model
    model, _ = parse_model(path.read_bytes())
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def test_sizes_follow_dtype(converted):
    out = converted["out"]
    size = {d: (out / f"face_{d}.tflite").stat().st_size for d in DTYPES}
    weights = {d: _weight_bytes(out / f"face_{d}.tflite") for d in DTYPES}
    assert 0.45 <= weights["float16"] / weights["float32"] <= 0.55
    assert 0.22 <= weights["int8"] / weights["float32"] <= 0.32  # int8 weights (+ int32 biases)
    assert 0.45 <= size["float16"] / size["float32"] <= 0.65
    # the file is more than a quarter: per-channel scales + int64 zero points per channel dominate small nets
    assert size["int8"] < size["float16"] and size["int8"] / size["float32"] <= 0.6


def test_tflite_embeddings_match_keras_on_real_faces(converted):
    if converted["kind"] != "real":
        pytest.skip("no aligned faces (cache or shared CelebA): cosine checks need real faces")
    from edgeface.runtime.interpreter import TFLiteModel
    x = load_faces(converted["eval_dir"], seed=1)  # not the calibration (seed 0) nor the BN (seed 2) sample
    ref = np.asarray(converted["model"](x, training=False))
    en = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    pairwise = (en @ en.T)[np.triu_indices(len(en), 1)]
    assert pairwise.mean() < 0.5, "embeddings collapsed: the cosine checks below would be meaningless"
    cos = {d: cosine_rows(ref, TFLiteModel(converted["out"] / f"face_{d}.tflite").run(x)) for d in DTYPES}
    assert cos["float32"].min() >= 0.99
    assert cos["float16"].min() >= 0.99
    assert cos["int8"].mean() >= 0.95, cos["int8"].mean()


def test_info_prints_card_ops_and_tensors(converted, capsys):
    path = converted["out"] / "face_int8.tflite"
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("face_int8.tflite: face_embedding, int8, ") and "matches its card" in text
    assert "ops (" in text and "CONV_2D" in text and "input:  [1, 112, 112, 3] float32; RGB" in text
    assert "accuracy: not measured" in text and len(text.splitlines()) <= 15
    assert main(["info", str(path), "--json", "--tensors"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["card_matches_file"] is True and report["bytes"] == path.stat().st_size
    assert report["inputs"][0]["shape"] == [1, 112, 112, 3] and len(report["tensors"]) == report["tensor_count"]


def test_info_rejects_non_tflite(tmp_path, capsys):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a valid TFLite model" in err[0]


def test_write_pair_is_all_or_nothing(tmp_path):
    """An interrupted card write leaves neither the .tflite nor a temp file in place."""
    from edgeface.convert.tflite import _write_pair

    def boom(_tmp):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _write_pair(tmp_path / "m_int8.tflite", b"1234TFL3" + bytes(100), boom)
    assert list(tmp_path.iterdir()) == []
