"""align_folder on a tiny real tree: statuses, outputs, resume, parallel workers, and the CLI."""
import json
import shutil

import cv2
import numpy as np
import pytest

from edgeface.align.pipeline import MANIFEST, align_folder, align_image, read_manifest
from edgeface.cli import main
from edgeface.errors import EdgefaceError
from edgeface.utils.locks import locked

REAL = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
        "Abdullah_Gul/Abdullah_Gul_0001.jpg"]


@pytest.fixture(scope="module")
def tree(lfw_root, tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for rel in REAL:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lfw_root / rel, src / rel)
    data = (lfw_root / REAL[0]).read_bytes()
    (src / "Broken").mkdir()
    (src / "Broken" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (src / "Broken" / "notes.txt").write_text("not an image")
    (src / "Broken" / ".hidden.jpg").write_bytes(data)  # hidden: ignored entirely
    (src / "Grey").mkdir()
    cv2.imwrite(str(src / "Grey" / "grey.png"), np.full((250, 250, 3), 128, np.uint8))  # no face
    return src


@pytest.fixture(scope="module")
def aligned(tree, tmp_path_factory):
    dst = tmp_path_factory.mktemp("dst") / "out"
    summary = align_folder(tree, dst, workers=2, min_face_size=40)  # the real spawn pool
    return dst, summary


def by_source(dst):
    return {r["source"]: r for r in read_manifest(dst)}


def test_statuses_and_outputs(aligned):
    dst, summary = aligned
    recs = by_source(dst)
    assert set(recs) == set(REAL) | {"Broken/cut.jpg", "Broken/notes.txt", "Grey/grey.png"}
    for rel in REAL:
        r = recs[rel]
        assert r["status"] == "ok" and r["score"] > 0.9, r
        assert r["output"] == rel[:-4] + ".png"
        crop = cv2.imread(str(dst / r["output"]))
        assert crop.shape == (112, 112, 3) and crop.std() > 20
        le, re_, nose, ml, mr = np.array(r["landmarks"])
        assert le[0] < re_[0] and ml[0] < mr[0] and le[1] < nose[1] < ml[1]  # a plausible upright face
    for rel in ("Broken/cut.jpg", "Broken/notes.txt"):
        assert recs[rel]["status"] == "bad_image" and recs[rel]["output"] is None and recs[rel]["error"]
    grey = recs["Grey/grey.png"]
    assert grey["status"] == "fallback" and grey["box"] is None and grey["retry"] is True  # relaxed pass ran too
    assert cv2.imread(str(dst / grey["output"])).shape == (112, 112, 3)
    assert summary["counts"] == {"ok": 3, "fallback": 1, "no_face": 0, "bad_image": 2}
    assert summary["fail_rate"] == pytest.approx(0.5)
    assert json.loads((dst / "summary.json").read_text())["counts"] == summary["counts"]


def test_rerun_resumes_without_redoing(tree, aligned):
    dst, _ = aligned
    out = dst / "Aaron_Peirsol" / "Aaron_Peirsol_0001.png"
    assert (dst / "summary.png").is_file()
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*.png")}
    again = align_folder(tree, dst, workers=1, min_face_size=40)
    assert again["processed_now"] == 0 and again["skipped_done"] == 6
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.png")} == before
    # A lost output and a line cut by an interrupt: only that image is redone.
    out.unlink()
    with open(dst / MANIFEST, "a") as f:
        f.write('{"source": "Abdullah_Gul/Abdul')
    third = align_folder(tree, dst, workers=1, min_face_size=40)
    assert third["processed_now"] == 1 and out.is_file()
    assert third["counts"] == again["counts"]
    assert len(read_manifest(dst)) == 6


def test_cli_exit_codes(tree, aligned, tmp_path, capsys):
    dst, _ = aligned
    assert main(["align", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeface: error:") and "\n" not in err
    # Everything already done: these resume instantly; 50% failures > 10% -> exit 1.
    assert main(["align", str(tree), str(dst), "--min-face-size", "40", "--workers", "1"]) == 0
    assert "ok 3" in capsys.readouterr().out
    assert main(["align", str(tree), str(dst), "--min-face-size", "40", "--max-fail-rate", "0.1"]) == 1
    assert main(["align", str(tree), str(dst), "--clahe"]) == 2  # different pixels: refuse to mix


def test_align_image_statuses(lfw_root):
    from edgeface.align.detect import MTCNNDetector
    from edgeface.utils.images import read_image

    det = MTCNNDetector(min_face_size=40)
    crop, face, status = align_image(read_image(lfw_root / REAL[2]), det, "arcface96x112", clahe=True)
    assert status == "ok" and crop.shape == (112, 96, 3) and face.score > 0.9
    grey = np.full((250, 250, 3), 128, np.uint8)
    assert align_image(grey, det, fallback=False) == (None, None, "no_face")
    # Batched detection (what align_folder uses) finds the same faces as one-by-one detection.
    imgs = [read_image(lfw_root / r) for r in REAL] + [grey]
    for one, many in zip([det.detect(im) for im in imgs], det.detect_batch(imgs)):
        assert len(one) == len(many)
        for a, b in zip(one, many):
            assert np.abs(a.landmarks - b.landmarks).max() < 1.5 and abs(a.score - b.score) < 0.01
    crop, face, status = align_image(grey, det)
    assert status == "fallback" and face is None and crop.shape == (112, 112, 3)


def test_bad_arguments(tmp_path):
    with pytest.raises(EdgefaceError):
        align_folder(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "src").mkdir()
    with pytest.raises(EdgefaceError):
        align_folder(tmp_path / "src", tmp_path / "src" / "inside")
    with pytest.raises(EdgefaceError):
        read_manifest(tmp_path)
    (tmp_path / "src" / "a").mkdir()
    with locked(tmp_path / "src", timeout=0, lock_path=tmp_path / "src" / ".align.lock"):  # another run holds DST
        with pytest.raises(EdgefaceError, match="already writing"):
            align_folder(tmp_path / "src" / "a", tmp_path / "src")
    assert not (tmp_path / "src" / ".align.lock").exists()  # no lock file left behind


def test_output_names_never_collide():
    from edgeface.align.pipeline import output_names

    names = output_names(["a/x.jpg", "a/x.png", "a/y.jpeg", "b/x.jpg"])
    assert names == {"a/x.jpg": "a/x.jpg.png", "a/x.png": "a/x.png.png", "a/y.jpeg": "a/y.png", "b/x.jpg": "b/x.png"}
