"""Training-data hygiene on real images: exact duplicates by content, and LFW people hidden among CelebA
faces found by the real ncnn teacher."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeface: error:") and "\n" not in err, err
    return err


def _celeba_jpgs(celeba_root: Path, n: int) -> list[Path]:
    """One photo of each of n CelebA people."""
    return [sorted(p.glob("*.jpg"))[0] for p in sorted(celeba_root.iterdir()) if p.is_dir()][:n]


def test_dedupe_within_and_across_sets(tmp_path, celeba_root, capsys):
    jpgs = _celeba_jpgs(celeba_root, 6)
    a, b = tmp_path / "set_a", tmp_path / "set_b"
    for i, j in enumerate(jpgs[:4]):
        (a / "x").mkdir(parents=True, exist_ok=True)
        shutil.copy(j, a / "x" / f"{i}.jpg")
    shutil.copy(jpgs[0], a / "copy_of_0.jpg")           # duplicate within set_a
    b.mkdir()
    shutil.copy(jpgs[1], b / "b1.jpg")                    # duplicate of set_a's x/1.jpg
    shutil.copy(jpgs[4], b / "b4.jpg")
    shutil.copy(jpgs[4], b / "b4_again.jpg")              # duplicate within set_b
    shutil.copy(jpgs[5], b / "b5.png")                    # any image extension is hashed
    (b / "notes.txt").write_text("not an image")
    dst = tmp_path / "clean"
    assert main(["data", "dedupe", str(a), str(b), "--out", str(dst)]) == 0
    report = json.loads((dst / "dedupe.json").read_text())
    assert report["counts"] == {
        "set_a": {"files": 5, "duplicates_within": 1, "duplicates_of_earlier_sets": 0, "kept": 4},
        "set_b": {"files": 4, "duplicates_within": 1, "duplicates_of_earlier_sets": 1, "kept": 2}}
    kept = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file() and p.name != "dedupe.json")
    # "copy_of_0.jpg" sorts before "x/0.jpg", so it is the kept first copy.
    assert kept == ["set_a/copy_of_0.jpg", "set_a/x/1.jpg", "set_a/x/2.jpg", "set_a/x/3.jpg",
                    "set_b/b4.jpg", "set_b/b5.png"]
    # Independently: the kept files are all distinct and cover every distinct input.
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    ins = {digest(p) for s in (a, b) for p in s.rglob("*") if p.suffix in (".jpg", ".png")}
    outs = [digest(dst / k) for k in kept]
    assert len(set(outs)) == len(outs) and set(outs) == ins
    assert (dst / "set_a/x/1.jpg").stat().st_ino == (a / "x/1.jpg").stat().st_ino  # a hard link, not a copy
    assert {d["path"]: d["same_as"] for d in report["dropped"]} == {
        "x/0.jpg": "set_a/copy_of_0.jpg", "b1.jpg": "set_a/x/1.jpg", "b4_again.jpg": "set_b/b4.jpg"}
    capsys.readouterr()
    # An existing OUT, and a set named twice, are refused before any hashing.
    assert main(["data", "dedupe", str(a), "--out", str(dst)]) == 2
    assert "already exists" in _one_line_error(capsys)
    (tmp_path / "other").mkdir()
    shutil.copytree(a, tmp_path / "other" / "set_a")
    assert main(["data", "dedupe", str(a), str(tmp_path / "other" / "set_a"), "--out", str(tmp_path / "c2")]) == 2
    assert "named 'set_a'" in _one_line_error(capsys)


def test_dedupe_uses_the_get_manifest(tmp_path, celeba_root):
    # A folder written by `data get` carries sha256s: a wrong one in the manifest proves they are used.
    jpgs = _celeba_jpgs(celeba_root, 2)
    s = tmp_path / "got"
    s.mkdir()
    for i, j in enumerate(jpgs):
        shutil.copy(j, s / f"{i}.jpg")
    same = hashlib.sha256(b"x").hexdigest()
    (s / "manifest.json").write_text(json.dumps({"files": [{"path": "0.jpg", "bytes": 1, "sha256": same},
                                                           {"path": "1.jpg", "bytes": 1, "sha256": same}]}))
    assert main(["data", "dedupe", str(s), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "dedupe.json").read_text())["counts"]["got"]["kept"] == 1


@pytest.fixture(scope="module")
def mixed_aligned(tmp_path_factory, celeba_root, lfw_root):
    """Aligned crops of (train) 12 CelebA people + 4 LFW people's photo 1, and (lfw) those 4 people's
    photo 2 + 12 other LFW people."""
    from edgeface.align.pipeline import align_folder

    root = tmp_path_factory.mktemp("hyg")
    raw_train, raw_lfw = root / "raw" / "mixed", root / "raw" / "lfw"
    for j in _celeba_jpgs(celeba_root, 12):
        (raw_train / j.parent.name).mkdir(parents=True)
        shutil.copy(j, raw_train / j.parent.name / j.name)
    multi = [p for p in sorted(lfw_root.iterdir()) if len(list(p.glob("*.jpg"))) >= 2]
    hidden, others = multi[:40:10], multi[41:65:2]  # disjoint people
    assert not set(hidden) & set(others)
    for p in hidden:
        (raw_train / f"lfw_{p.name}").mkdir()
        shutil.copy(p / f"{p.name}_0001.jpg", raw_train / f"lfw_{p.name}" / "photo.jpg")
        (raw_lfw / p.name).mkdir(parents=True)
        shutil.copy(p / f"{p.name}_0002.jpg", raw_lfw / p.name)
    for p in others:
        shutil.copytree(p, raw_lfw / p.name, ignore=lambda d, names: [n for n in names if not n.endswith("_0001.jpg")])
    for name in ("mixed", "lfw"):
        align_folder(root / "raw" / name, root / name, workers=0, min_face_size=40)
    return {"train": root / "mixed", "lfw": root / "lfw", "hidden": [p.name for p in hidden]}


@pytest.mark.slow
def test_lfw_people_among_celeba_are_dropped(tmp_path, mixed_aligned, teachers_root, capsys):
    teacher = teachers_root / "mobilefacenet-ncnn"
    dst = tmp_path / "clean"
    assert main(["data", "lfw-overlap", str(mixed_aligned["train"]), "--lfw", str(mixed_aligned["lfw"]),
                 "--teacher", str(teacher), "--out", str(dst), "--cache", str(tmp_path / "cache")]) == 0
    report = json.loads((dst / "lfw_overlap.json").read_text())
    dropped = {d["path"]: d for d in report["dropped"]}
    hidden = {f"lfw_{n}/photo.png" for n in mixed_aligned["hidden"]}
    assert set(dropped) == hidden, report["dropped"]
    for path, d in dropped.items():
        # Caught by a DIFFERENT photo of the same person (photo 2), not by a copy.
        assert d["lfw"] == f"{path.split('/')[0][4:]}/{path.split('/')[0][4:]}_0002.png"
        assert d["cosine"] >= 0.5
    # The reference is the 16 LFW crops, not the contact sheet `edgeface align` writes beside them.
    assert (mixed_aligned["lfw"] / "summary.png").is_file()
    assert not any(d["lfw"] == "summary.png" for d in report["dropped"])
    assert report["lfw_faces"] == 16
    c = report["counts"]["mixed"]
    assert (c["faces"], c["dropped"], c["kept"]) == (16, 4, 12)
    kept = sorted(p.parent.name for p in (dst / "mixed").rglob("*.png"))
    assert len(kept) == 12 and not any(k.startswith("lfw_") for k in kept)
    # Beside the clean set: the teacher's targets of every kept crop, under the crop's new path,
    # equal to the embeddings computed from the original crops.
    with np.load(dst / "teacher_mixed.npz") as z:
        assert sorted(z["paths"].tolist()) == sorted(str(p.absolute()) for p in (dst / "mixed").rglob("*.png"))
        with np.load(tmp_path / "cache" / "teacher_mixed.npz") as src:
            by_path = dict(zip(src["paths"].tolist(), src["emb"]))
            for path, emb in zip(z["paths"].tolist(), z["emb"]):
                original = str((mixed_aligned["train"] / Path(path).relative_to(dst / "mixed")).absolute())
                np.testing.assert_allclose(emb, by_path[original], atol=1e-6)
    # A threshold above every cosine drops nothing; a rerun is served from the cache.
    assert main(["data", "lfw-overlap", str(mixed_aligned["train"]), "--lfw", str(mixed_aligned["lfw"]),
                 "--teacher", str(teacher), "--out", str(tmp_path / "c2"), "--cache", str(tmp_path / "cache"),
                 "--threshold", "0.9999"]) == 0
    assert json.loads((tmp_path / "c2" / "lfw_overlap.json").read_text())["counts"]["mixed"]["dropped"] == 0
    capsys.readouterr()
    assert main(["data", "lfw-overlap", str(mixed_aligned["train"]), "--lfw", str(tmp_path / "nope"),
                 "--teacher", str(teacher), "--out", str(tmp_path / "c3")]) == 2
    assert "no LFW face crops" in _one_line_error(capsys)
    assert not (tmp_path / "c3").exists()


def test_dedupe_held_out_copies_are_dropped_and_never_kept(tmp_path, celeba_root):
    jpgs = _celeba_jpgs(celeba_root, 3)
    train, test = tmp_path / "train", tmp_path / "public_test"
    train.mkdir()
    test.mkdir()
    for i, j in enumerate(jpgs):
        shutil.copy(j, train / f"{i}.jpg")
    shutil.copy(jpgs[1], test / "PublicTest_1.jpg")  # a test face that is also in training
    dst = tmp_path / "clean"
    assert main(["data", "dedupe", str(train), "--held-out", str(test), "--out", str(dst)]) == 0
    report = json.loads((dst / "dedupe.json").read_text())
    assert report["counts"]["train"] == {"files": 3, "duplicates_within": 0, "duplicates_of_earlier_sets": 0,
                                         "kept": 2, "copies_of_held_out": 1}
    assert report["dropped"] == [{"set": "train", "path": "1.jpg", "same_as": "held-out:public_test/PublicTest_1.jpg"}]
    assert sorted(p.name for p in dst.iterdir()) == ["dedupe.json", "train"]
