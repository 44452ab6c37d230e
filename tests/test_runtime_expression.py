"""`edgeface expression` (TF-free): real interpreter, real TFLite MTCNN, real CK+ photos, a real video.

The faces are CK+48 photos from the subject-held-out test split the shipped model's card records
(people the model never trained on). The video test uses only photos that the model classifies
correctly on their own (48x48 crop straight into the model), so what it checks is the live path
around the model: the detector finds each face in a 640x480 frame (two per frame), the crop and
the card's preprocessing reproduce the training input, and the label survives the mp4 round trip.
The video is written here with OpenCV's VideoWriter, and the command runs in a subprocess in which
TensorFlow, keras and mtcnn cannot be imported (the blocker of tests/test_runtime_cli.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import main as cli_main
from test_runtime_cli import BLOCKER  # the one TF/keras/mtcnn import blocker of the runtime tests

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "edgeface_expr_cnn_int8.tflite"
FACE_MODEL = REPO / "models" / "edgeface_face_int8.tflite"
HOLD = 3  # frames per pair of faces

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason=f"shipped expression model missing: {MODEL}")


@pytest.fixture(scope="module")
def pipe():
    from edgeface.runtime.expression import ExpressionPipeline

    return ExpressionPipeline(MODEL)


@pytest.fixture(scope="module")
def ck_faces(expressions_root, pipe) -> list[tuple[np.ndarray, str]]:
    """(gray 48x48, label) for up to 2 test-split photos per class that the model gets right on their own."""
    from edgeface.spec import card_split_and_preprocessing
    from edgeface.data import expressions as xdata

    root = expressions_root / "ckplus48"
    if not root.is_dir():
        pytest.skip(f"CK+48 not found at {root}")
    c = pipe.classifier
    spec, _ = card_split_and_preprocessing(c.model.model_card)
    data = xdata.load_dataset(root, kind=spec["kind"], seed=spec["seed"], val_fraction=spec["val_fraction"],
                              test_fraction=spec["test_fraction"], split_by=spec["split_by"])
    picked, per_class = [], {}
    for s in data.splits["test"]:
        name = data.class_names[s.label]
        if per_class.get(name, 0) >= 2:
            continue
        gray = cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE)
        if c.probabilities(c.prepare(gray)[None])[0].argmax() == s.label:
            picked.append((gray, name))
            per_class[name] = per_class.get(name, 0) + 1
    assert len(per_class) >= 4 and len(picked) >= 8, per_class
    # round robin over the classes (first photo of each, then the second), so the two faces of a
    # frame differ in class and left/right mix-ups would show; an even number, at most 10
    rounds = sorted(range(len(picked)), key=lambda i: (sum(p[1] == picked[i][1] for p in picked[:i]), i))
    picked = [picked[i] for i in rounds]
    return picked[:min(10, len(picked) // 2 * 2)]


@pytest.fixture(scope="module")
def faces_video(tmp_path_factory, ck_faces):
    """(video path, expected [left, right] labels per frame): pairs of faces, each pair held HOLD frames."""
    from edgeface.runtime.expression import face_frames, write_video

    pairs = [(ck_faces[i], ck_faces[i + 1]) for i in range(0, len(ck_faces), 2)]
    sets = [[a[0], b[0]] for a, b in pairs for _ in range(HOLD)]
    expected = [[a[1], b[1]] for a, b in pairs for _ in range(HOLD)]
    path = write_video(face_frames(sets), tmp_path_factory.mktemp("video") / "faces.mp4")
    return path, expected


@pytest.fixture(scope="module")
def two_faces_png(tmp_path_factory, ck_faces) -> tuple[Path, list[str]]:
    from edgeface.runtime.expression import face_frames

    (a, la), (b, lb) = ck_faces[0], ck_faces[-1]
    p = tmp_path_factory.mktemp("img") / "two.png"
    cv2.imwrite(str(p), face_frames([[a, b]])[0])
    return p, [la, lb]


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def no_tf_env(tmp_path_factory) -> dict:
    """Environment for a subprocess in which tensorflow, tf_keras, keras and mtcnn cannot be imported."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "EDGEFACE_NO_PROGRESS": "1"}


def run_no_tf(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeface", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_video_of_known_faces_is_labelled_without_tensorflow(tmp_path, faces_video, no_tf_env):
    """`edgeface expression --video V --json --out O.mp4` with TF/keras/mtcnn unimportable:
    both faces found in every frame, the expected class in most of them, the drawn video written."""
    video, expected = faces_video
    assert run_no_tf(no_tf_env, "--version").returncode == 0
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env=no_tf_env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked" in blocked.stderr  # the blocker is active
    out = tmp_path / "drawn.mp4"
    r = run_no_tf(no_tf_env, "expression", "--video", video, "--json", "--out", out, "--threads", 1)
    assert r.returncode == 0, r.stderr
    frames = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(frames) == len(expected)
    assert [f["frame"] for f in frames] == list(range(len(expected)))
    assert all(len(f["faces"]) == 2 for f in frames), [len(f["faces"]) for f in frames]  # the detector finds both
    for f in frames:
        for face in f["faces"]:
            probs = face["probabilities"]
            assert abs(sum(probs.values()) - 1.0) < 0.02 and face["label"] == max(probs, key=probs.get)
    faces_right = sum(fx["label"] == want for f, labels in zip(frames, expected) for fx, want in zip(f["faces"], labels))
    assert faces_right / (2 * len(expected)) >= 0.8, (faces_right, [[x["label"] for x in f["faces"]] for f in frames],
                                                      expected)
    frames_right = sum([fx["label"] for fx in f["faces"]] == labels for f, labels in zip(frames, expected))
    assert frames_right / len(expected) >= 0.7
    # --json keeps stdout machine-readable: the one summary line goes to stderr, nothing else does
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"{len(expected)} frames in "), r.stderr
    cap = cv2.VideoCapture(str(out))
    n, size = 0, None
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        n, size = n + 1, bgr.shape
    assert n == len(expected) and size == (480, 640, 3)


def test_image_text_and_drawn_output(capsys, tmp_path, two_faces_png):
    """Image mode: one line per face (left to right) with label and every probability; --out IMG draws them."""
    img, labels = two_faces_png
    out = tmp_path / "drawn.png"
    code, stdout, err = run(capsys, "expression", img, "--out", out)
    assert code == 0, err
    lines = [ln for ln in stdout.splitlines() if " face " in ln]
    assert len(lines) == 2
    for line, want in zip(lines, labels):
        assert f": {want} " in line and all(n in line for n in ("anger", "happy", "surprise"))
    drawn, src = cv2.imread(str(out)), cv2.imread(str(img))
    assert drawn.shape == src.shape and np.abs(drawn.astype(int) - src).mean() > 1.0


def test_several_images_json_one_object_each(capsys, tmp_path, two_faces_png):
    img, labels = two_faces_png
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    code, stdout, err = run(capsys, "expression", img, blank, "--json", "--out", tmp_path / "drawn")
    assert code == 0, err
    objs = [json.loads(line) for line in stdout.splitlines()]
    assert [o["image"] for o in objs] == [str(img), str(blank)]
    assert [f["label"] for f in objs[0]["faces"]] == labels and objs[1]["faces"] == []
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["blank_expression.png", "two_expression.png"]


def test_classifier_reads_the_card(pipe):
    c = pipe.classifier
    card = c.model.model_card
    assert c.class_names == card.class_names == c.model.card["output"]["class_names"]
    assert (c.size, c.channels) == (48, 1) and c.clahe
    assert (c.mean, c.std) == (card.input.mean, card.input.std)


def test_tta_averages_each_face_over_its_views(ck_faces):
    """--tta flip: the mean of the interpreter's probabilities on each input and on its left-right mirror;
    --tta ten: also over four diagonal 1-pixel shifts (OpenCV's reflect-101 warp, as training's) and their mirrors."""
    from edgeface.runtime.expression import ExpressionClassifier

    plain = ExpressionClassifier(MODEL, tta="none")
    flipped, ten = ExpressionClassifier(MODEL, tta="flip"), ExpressionClassifier(MODEL, tta="ten")
    assert ExpressionClassifier(MODEL).tta == "none"  # this card recommends no TTA
    x = np.stack([plain.prepare(gray) for gray, _ in ck_faces[:4]])
    mirror = lambda v: np.ascontiguousarray(v[:, :, ::-1])
    expect = (plain.probabilities(x) + plain.probabilities(mirror(x))) / 2
    got = flipped.probabilities(x)
    assert np.allclose(got, expect, atol=1e-6)
    assert np.allclose(got.sum(1), 1, atol=7 / 256)  # int8 outputs: steps of 1/256 per class
    assert not np.allclose(got, plain.probabilities(x), atol=1e-4)  # the mirror changes the answer

    def warp(v, dx, dy):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        return np.stack([cv2.warpAffine(im, m, (48, 48), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_REFLECT_101)[:, :, None] for im in v])
    views = [x] + [warp(x, dx, dy) for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    expect10 = np.mean([plain.probabilities(v) + plain.probabilities(mirror(v)) for v in views], axis=0) / 2
    assert np.allclose(ten.probabilities(x), expect10, atol=1e-6)
    assert not np.allclose(expect10, expect, atol=1e-4)


def test_tta_flags(capsys, two_faces_png):
    """--flip is --tta flip; both at once, or an unknown mode, is one-line bad usage."""
    img, _ = two_faces_png
    code, by_flip, err = run(capsys, "expression", img, "--model", MODEL, "--json", "--flip")
    assert code == 0, err
    assert run(capsys, "expression", img, "--model", MODEL, "--json", "--tta", "flip")[1] == by_flip
    assert run(capsys, "expression", img, "--model", MODEL, "--json", "--tta", "ten")[1] != by_flip
    code, _, err = run(capsys, "expression", img, "--model", MODEL, "--tta", "ten", "--no-flip")
    assert code == 2 and "not both" in err and len(err.strip().splitlines()) == 1
    assert run(capsys, "expression", img, "--model", MODEL, "--tta", "five")[0] == 2


def _bad_inputs(tmp: Path) -> dict[str, list]:
    """Every kind of bad input the brief names: each must give one `edgeface: error:` line and exit 2."""
    text = tmp / "not_image.jpg"
    text.write_text("hello")
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(b"\0" * 2048)
    empty_mp4, empty_avi = tmp / "empty.mp4", tmp / "empty.avi"  # written with no frames
    for path, fourcc in ((empty_mp4, "mp4v"), (empty_avi, "MJPG")):
        cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (640, 480)).release()
    blank = tmp / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    bad_model = tmp / "bad.tflite"
    bad_model.write_text("not a model")
    return {
        "missing image": ["expression", tmp / "nope.jpg"],
        "unreadable image": ["expression", text],
        "no face": ["expression", blank],
        "no face, --json": ["expression", blank, "--json", "--out", tmp / "drawn.png"],
        "no face in any image": ["expression", blank, blank],
        "missing video": ["expression", "--video", tmp / "nope.mp4"],
        "garbage video": ["expression", "--video", garbage],
        "mp4 without frames": ["expression", "--video", empty_mp4],  # FFmpeg cannot open it
        "avi without frames": ["expression", "--video", empty_avi],  # opens, then no frame to read
        "no camera": ["expression", "--camera", "57"],
        "bad model": ["expression", blank, "--model", bad_model],
        "missing model": ["expression", blank, "--model", tmp / "none.tflite"],
        "no input": ["expression"],
        "two inputs": ["expression", blank, "--video", garbage],
        "video --out not a video": ["expression", "--video", garbage, "--out", tmp / "o.png"],
    }


BAD_CASES = ["missing image", "unreadable image", "no face", "no face, --json", "no face in any image",
             "missing video", "garbage video", "mp4 without frames", "avi without frames", "no camera",
             "bad model", "missing model", "no input", "two inputs", "video --out not a video"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2(tmp_path, no_tf_env, case):
    """In a subprocess (TF blocked) so that native log lines on fd 2 count too."""
    r = run_no_tf(no_tf_env, *_bad_inputs(tmp_path)[case])
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("edgeface: error: "), (case, r.stderr)
    if case == "no face in any image":  # several images: each is reported, then the error
        assert r.stdout.splitlines() == [f"{tmp_path / 'blank.png'}: no face found"] * 2
    else:
        assert r.stdout == "", (case, r.stdout)
    if case == "avi without frames":
        assert "no frames could be read" in r.stderr
    assert not (tmp_path / "drawn.png").exists()


@pytest.mark.skipif(not FACE_MODEL.exists(), reason="shipped face embedder missing")
def test_face_embedder_is_not_an_expression_model(capsys, two_faces_png):
    code, out, err = run(capsys, "expression", two_faces_png[0], "--model", FACE_MODEL)
    assert code == 2 and "not an expression classifier" in err and len(err.splitlines()) == 1
