"""edgeface verify / enroll / identify end to end, and the proof that the runtime needs no TensorFlow.

The embedder is the shipped models/edgeface_face_int8.tflite when it exists; before that, a small
int8 MobileNetV2 is built once with TensorFlow (BN statistics set from real CelebA faces so its
embeddings are not degenerate) and cached under ./cache. Its embeddings are untrained: tests on
it check mechanics and numbers that hold for any model (an image matches itself, exit codes);
the accuracy test needs the shipped model and skips until it exists.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "edgeface_face_int8.tflite"
BLOCKED = ("tensorflow", "tf_keras", "keras", "mtcnn")


def build_dev_model(path: Path, celeba_root: Path) -> Path:
    """Untrained int8 embedder (alpha 0.35) calibrated on 16 CelebA faces (never LFW)."""
    pytest.importorskip("tensorflow", reason="building the dev embedder needs TensorFlow (dev venv)")
    import edgeface  # noqa: F401
    import tensorflow as tf
    import tf_keras as keras

    from edgeface.align.transform import centre_crop
    from edgeface.nets import get_model
    from edgeface.utils.images import read_image
    from edgeface.utils.io import write_bytes_atomic

    tf.random.set_seed(0)
    model = get_model("mobilenetv2", input_size=112, alpha=0.35, embedding_dim=128, last_channels=256)
    files = sorted(celeba_root.glob("*/*.jpg"))[::300][:16]
    x = np.stack([centre_crop(read_image(f)) for f in files]).astype(np.float32) / 127.5 - 1.0
    # Data-dependent BN statistics: a freshly initialised net otherwise shrinks activations
    # to ~1e-10, which int8 rounds to zero embeddings.
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        a = keras.Model(model.inputs, bn.input)(x).numpy()
        gamma, beta, _, _ = bn.get_weights()
        axes = tuple(range(a.ndim - 1))
        bn.set_weights([gamma, beta, a.mean(axes), a.var(axes) + 1e-3])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return write_bytes_atomic(path, conv.convert())


@pytest.fixture(scope="session")
def face_model(celeba_root) -> Path:
    if SHIPPED.exists():
        return SHIPPED
    from edgeface.utils.paths import cache_dir

    path = cache_dir() / "test_runtime" / "dev_face_int8_v1.tflite"
    if not path.exists():
        build_dev_model(path, celeba_root)
    return path


@pytest.fixture(scope="session")
def bare_model(face_model, tmp_path_factory) -> Path:
    """The model without a card (so no card threshold)."""
    p = tmp_path_factory.mktemp("bare") / "face.tflite"
    shutil.copy(face_model, p)
    return p


@pytest.fixture(scope="session")
def carded_model(face_model, tmp_path_factory) -> Path:
    """The model with a card carrying a bench threshold."""
    d = tmp_path_factory.mktemp("carded")
    p = d / "face.tflite"
    shutil.copy(face_model, p)
    (d / "face.json").write_text(json.dumps({"name": "face", "task": "face_embedding",
                                             "input": {"alignment": "arcface112", "color": "RGB",
                                                       "normalization": {"mean": 127.5, "std": 127.5}},
                                             "verification": {"threshold": 0.42, "operating_points": {
                                                 "best_accuracy": {"threshold": 0.42, "accuracy": 0.9, "tar": 0.9,
                                                                   "far": 0.1},
                                                 "far_1e-3": {"threshold": 0.97, "tar": 0.5, "far": 0.001}}}}))
    return p


@pytest.fixture(scope="session")
def lfw_files(lfw_root):
    def get(name: str, i: int) -> Path:
        p = lfw_root / name / f"{name}_{i:04d}.jpg"
        if not p.exists():
            pytest.skip(f"LFW image missing: {p}")
        return p
    return get


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- verify ---------------------------------------------------------------------------------
def test_verify_same_image_is_same_person(capsys, bare_model, lfw_files):
    a = lfw_files("Aaron_Eckhart", 1)
    code, out, _ = run(capsys, "verify", a, a, "--model", bare_model, "--threshold", "0.5", "--json")
    assert code == 0
    r = json.loads(out)
    assert r["same"] is True and r["score"] == pytest.approx(1.0, abs=1e-4) and r["threshold"] == 0.5
    assert r["faces"][0]["landmarks"][0][0] < r["faces"][0]["landmarks"][1][0]
    assert set(r["timings_ms"]) == {"decode", "detect", "align", "embed"}


def test_verify_uses_card_threshold_or_asks_for_one(capsys, bare_model, carded_model, lfw_files):
    a, b = lfw_files("Aaron_Eckhart", 1), lfw_files("Colin_Powell", 1)
    code, out, _ = run(capsys, "verify", a, b, "--model", carded_model)
    assert code == 0 and "threshold 0.4200" in out
    assert out.startswith(("same person: cosine", "different people: cosine"))
    assert "(face.json: best accuracy, TAR 0.900 at FAR 0.100)" in out
    code, out, err = run(capsys, "verify", a, b, "--model", bare_model)
    assert code == 2 and out.startswith("cosine ")
    assert err.strip().splitlines() == [err.strip()] and "--threshold" in err


def test_verify_far_operating_point_and_exit_code(capsys, carded_model, lfw_files):
    a, b = lfw_files("Aaron_Eckhart", 1), lfw_files("Colin_Powell", 1)
    code, out, _ = run(capsys, "verify", a, a, "--model", carded_model, "--far", "1e-3", "--exit-code")
    assert code == 0 and out.startswith("same person: ")
    assert "threshold 0.9700 (face.json: far_1e-3, TAR 0.500 at FAR 0.0010)" in out
    code, out, _ = run(capsys, "verify", a, b, "--model", carded_model, "--far", "0.001", "--json")
    assert code == 0 and json.loads(out)["threshold"] == 0.97 and json.loads(out)["same"] is False
    assert "far_1e-3" in json.loads(out)["threshold_source"]
    # --exit-code: "different people" is exit 1 (two people, a threshold no pair of them reaches)
    code, out, err = run(capsys, "verify", a, b, "--model", carded_model, "--threshold", "0.99", "--exit-code")
    assert code == 1 and out.startswith("different people: ") and "(--threshold)" in out and err == ""
    # a FAR the card does not hold, a bad rate, both options: one line, exit 2
    code, _, err = run(capsys, "verify", a, b, "--model", carded_model, "--far", "1e-4")
    assert code == 2 and "no operating point at FAR 1e-4 (it has: 1e-3;" in err and len(err.splitlines()) == 1
    for bad in (["--far", "often"], ["--far", "2"], ["--far", "1e-3", "--threshold", "0.5"]):
        code, _, err = run(capsys, "verify", a, b, "--model", carded_model, *bad)
        assert code == 2 and len(err.splitlines()) == 1, (bad, err)


def test_verify_exit_codes(capsys, tmp_path, bare_model, lfw_files):
    a = lfw_files("Aaron_Eckhart", 1)
    code, _, err = run(capsys, "verify", tmp_path / "missing.jpg", a, "--model", bare_model, "--threshold", "0.5")
    assert code == 2 and "image not found" in err and len(err.strip().splitlines()) == 1
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    code, _, err = run(capsys, "verify", text, a, "--model", bare_model, "--threshold", "0.5")
    assert code == 2 and "not a readable image" in err and len(err.strip().splitlines()) == 1
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 200, 3), 128, np.uint8))
    code, _, err = run(capsys, "verify", blank, a, "--model", bare_model, "--threshold", "0.5")
    assert code == 2 and "no face found in" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "verify", blank, a, "--model", bare_model, "--threshold", "0.5", "--fallback-crop", "--json")
    assert code == 0 and json.loads(out)["faces"][0] is None
    code, _, err = run(capsys, "verify", a, a, "--model", tmp_path / "nope.tflite", "--threshold", "0.5")
    assert code == 2 and "model not found" in err


# ---- enroll / identify ----------------------------------------------------------------------
def test_enroll_identify_image_and_video(capsys, tmp_path, bare_model, lfw_files):
    import cv2

    gallery = tmp_path / "g.npz"
    people = ["Colin_Powell", "George_W_Bush", "Tony_Blair"]
    for name in people:
        code, out, _ = run(capsys, "enroll", name, lfw_files(name, 1), lfw_files(name, 2), "--gallery", gallery,
                           "--model", bare_model)
        assert code == 0 and "enrolled 2 image(s)" in out
    # an enrolled image finds its own person first: its cosine to the mean of its own and one more
    # embedding is sqrt((1 + c) / 2) >= 0.7 for any model where the two images have cosine c >= 0
    code, out, _ = run(capsys, "identify", lfw_files("Tony_Blair", 1), "--gallery", gallery, "--model", bare_model,
                       "--threshold", "0.3", "--top-k", "2", "--json")
    assert code == 0
    face = json.loads(out)["faces"][0]
    assert face["name"] == "Tony_Blair" and face["score"] > 0.7 and len(face["top_k"]) == 2
    code, out, err = run(capsys, "identify", lfw_files("Tony_Blair", 1), "--gallery", gallery, "--model", bare_model,
                       "--threshold", "0.999")
    assert code == 0 and out.startswith("face 1 (box") and ": unknown " in out
    assert err == "edgeface: threshold 0.9990 (--threshold)\n"

    # stream mode: a short (lossless, so frames equal the enrolled images) video of enrolled faces
    # -> annotated output video + FPS line
    src = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"png "), 5, (250, 250))
    for name in people:
        for _ in range(2):
            w.write(cv2.imread(str(lfw_files(name, 1))))
    w.release()
    out_video = tmp_path / "out" / "annotated.mp4"
    code, out, _ = run(capsys, "identify", "--video", src, "--gallery", gallery, "--model", bare_model,
                       "--threshold", "0.7", "--output", out_video)
    assert code == 0 and out.startswith("6 frames in") and "FPS" in out
    for name in people:
        assert f"{name} x2" in out
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (250, 250, 3)
    assert not list(out_video.parent.glob(".*partial*"))

    # usage errors: one line, exit 2
    code, _, err = run(capsys, "identify", "--gallery", gallery, "--model", bare_model, "--threshold", "0.5")
    assert code == 2 and "exactly one of" in err
    code, _, err = run(capsys, "identify", "--video", tmp_path / "none.mp4", "--gallery", gallery,
                       "--model", bare_model, "--threshold", "0.5")
    assert code == 2 and "video not found" in err


def test_gallery_of_another_model_is_refused(capsys, tmp_path, bare_model, carded_model, lfw_files):
    gallery = tmp_path / "g.npz"
    assert run(capsys, "enroll", "Tony", lfw_files("Tony_Blair", 1), "--gallery", gallery, "--model", bare_model)[0] == 0
    other = tmp_path / "other.tflite"
    data = bytearray(bare_model.read_bytes())
    data += b"\0" * 16  # same network, different file: a different sha256
    other.write_bytes(bytes(data))
    code, _, err = run(capsys, "identify", lfw_files("Tony_Blair", 2), "--gallery", gallery, "--model", other,
                       "--threshold", "0.5")
    assert code == 2 and "another model" in err
    code, _, err = run(capsys, "enroll", "Colin", lfw_files("Colin_Powell", 1), "--gallery", gallery, "--model", other)
    assert code == 2 and "another model" in err


def test_identify_accuracy_with_shipped_model(capsys, tmp_path, lfw_root):
    """Enroll 10 LFW people (first image), identify their next images: top-1 >= 80%."""
    if not SHIPPED.exists():
        pytest.skip(f"shipped model {SHIPPED.relative_to(REPO)} not built yet (train + convert produce it)")
    people = sorted(d.name for d in lfw_root.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 4)[:10]
    gallery = tmp_path / "g.npz"
    for name in people:
        code, _, err = run(capsys, "enroll", name, lfw_root / name / f"{name}_0001.jpg", "--gallery", gallery,
                           "--model", SHIPPED)
        assert code == 0, err
    from edgeface.runtime.gallery import Gallery
    from edgeface.runtime.pipeline import FacePipeline

    pipe = FacePipeline(SHIPPED)
    g = Gallery.load(gallery, pipe.embedder.sha256)
    hits = total = 0
    for name in people:
        for i in (2, 3, 4):
            _, _, emb = pipe.main_face(pipe.read(lfw_root / name / f"{name}_{i:04d}.jpg"), fallback_crop=True)
            hits += g.search(emb, top_k=1)[0].candidates[0][0] == name
            total += 1
    assert hits / total >= 0.8, f"top-1 {hits}/{total}"


# ---- no TensorFlow --------------------------------------------------------------------------
BLOCKER = f"""
import sys

BLOCKED = {BLOCKED!r}


class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the edgeface runtime must not need it")
        return None


sys.meta_path.insert(0, NoTensorFlow())
"""


def test_runtime_needs_no_tensorflow(tmp_path, face_model, lfw_files):
    """Every edgeface.runtime module imports, and `edgeface verify` runs, with TF/keras/mtcnn unimportable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "EDGEFACE_NO_PROGRESS": "1"}
    model = tmp_path / "face.tflite"
    shutil.copy(face_model, model)  # only the .tflite goes over
    check = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {BLOCKED!r}:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
            else:
                sys.exit(f"blocker not active: {{name}} imported")
        import edgeface.runtime
        mods = [m.name for m in pkgutil.iter_modules(edgeface.runtime.__path__, "edgeface.runtime.")]
        for m in mods:
            importlib.import_module(m)
        import edgeface.align.detect, edgeface.align.faces, edgeface.align.transform, edgeface.cli
        from edgeface.runtime.detector import Detector
        Detector()
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        assert not leaked, leaked
        print(len(mods), "modules")
    """)
    r = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    assert int(r.stdout.split()[0]) >= 8  # cli, detector, embedder, gallery, interpreter, pipeline, stream, ...
    a, b = lfw_files("Aaron_Eckhart", 1), lfw_files("Colin_Powell", 1)
    r = subprocess.run([sys.executable, "-m", "edgeface", "verify", str(a), str(b), "--model", str(model),
                        "--threshold", "0.5", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["same"] in (True, False) and -1.0 <= res["score"] <= 1.0 and res["faces"][0] and res["faces"][1]
    assert r.stderr == ""  # no tracebacks, no native log lines


def test_models_lists_the_shipped_cards(capsys):
    from edgeface.cli import main
    from edgeface.spec import load_card
    from edgeface.utils.paths import REPO_ROOT

    assert main(["models", "*micro*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["edgeface_face_micro_int8"]
    card = load_card(REPO_ROOT / "models" / "edgeface_face_micro_int8.tflite")
    assert rows[0]["bytes"] == card.bytes and rows[0]["input"] == "112x112x3"
    assert rows[0]["accuracy"] == f"LFW {100 * card.verification.lfw_accuracy:.2f}%"
    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 + len(list((REPO_ROOT / "models").glob("*.tflite")))
    assert main(["models", "no_such_*"]) == 2 and "matches" in capsys.readouterr().err


def test_models_architectures_lists_the_registry_with_its_metadata(capsys):
    from edgeface.cli import main
    from edgeface.nets import list_models

    assert main(["models", "--architectures", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_models()) >= {"mobilenetv2", "mobilenetv2_micro", "expr_cnn", "expr_mobilenetv2"}
    for r in rows.values():
        assert r["task"] and r["input"] and r["license"] and r["description"], r
        assert r["normalization"] == {"mean": 127.5, "std": 127.5}
    assert rows["mobilenetv2_micro"]["input"] == "112x112x3" and rows["mobilenetv2_micro"]["alignment"] == "arcface112"
    assert rows["expr_cnn"]["task"] == "expression_classification" and rows["expr_cnn"]["color"] == "GRAY"
    assert rows["expr_cnn"]["input"] == "48x48x1" and rows["expr_cnn"]["alignment"] == "-"
    assert main(["models", "--architectures", "*micro*"]) == 0  # fnmatch, like timm.list_models('*micro*')
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["name", "task", "input"] and len(table) == 2 and "mobilenetv2_micro" in table[1]
    assert list_models("expr_*") == sorted(n for n in rows if n.startswith("expr_"))
    assert main(["models", "--architectures", "no_such_*"]) == 2 and "matches" in capsys.readouterr().err
