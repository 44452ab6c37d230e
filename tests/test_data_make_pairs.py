"""`edgeface data pairs`: LFW-format pairs from a real identity folder (CelebA people), read back by the
project's own pairs validator and accepted by the bench."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.data.pairs import read_pairs


def _identity_folder(dst: Path, celeba_root: Path, people: int, per_person: int, png_for_first: bool = False) -> Path:
    """dst/<person>/<original CelebA file names> (not LFW names); optionally one person as PNG."""
    import cv2

    chosen = [p for p in sorted(celeba_root.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= per_person]
    for k, person in enumerate(chosen[:people]):
        (dst / person.name).mkdir(parents=True)
        for jpg in sorted(person.glob("*.jpg"))[:per_person]:
            if png_for_first and k == 0:
                cv2.imwrite(str(dst / person.name / (jpg.stem + ".png")), cv2.imread(str(jpg)))
            else:
                shutil.copy(jpg, dst / person.name / jpg.name)
    return dst


@pytest.fixture()
def ids(tmp_path, celeba_root):
    return _identity_folder(tmp_path / "ids", celeba_root, people=24, per_person=4, png_for_first=True)


def _person_of(link: Path) -> str:
    return Path(os.readlink(link)).parent.name


def test_pairs_pass_the_validator_and_same_pairs_are_one_folder(tmp_path, ids, capsys):
    out, links = tmp_path / "pairs.txt", tmp_path / "links"
    assert main(["data", "pairs", str(ids), "--out", str(out), "--lfw-layout", str(links), "--seed", "3"]) == 0
    assert "bench on it" in capsys.readouterr().out
    pairs = read_pairs(out, links, resolve="raw")  # checks every named image exists
    assert pairs.n_folds == 10 and pairs.per_class >= 1 and len(pairs) == 20 * pairs.per_class
    people_of_fold = []
    for fold in pairs.folds:
        seen = set()
        for a, b, same in fold:
            pa, pb = _person_of(a), _person_of(b)
            # The link's name (LFW) and its target's folder (the real person) agree.
            assert a.parent.name == pa and b.parent.name == pb
            assert (pa == pb) == same
            if same:
                assert os.readlink(a) != os.readlink(b)
            seen |= {pa, pb}
        people_of_fold.append(seen)
    # Identities are split between folds: nobody appears in two folds.
    for i in range(len(people_of_fold)):
        for j in range(i + 1, len(people_of_fold)):
            assert not people_of_fold[i] & people_of_fold[j]
    # Number i is the i-th file in sorted order (the PNG person too).
    person = sorted(p.name for p in ids.iterdir())[0]
    files = sorted((ids / person).iterdir())
    assert files[0].suffix == ".png"
    for i, f in enumerate(files, 1):
        assert Path(os.readlink(links / person / f"{person}_{i:04d}.jpg")) == f.resolve()
    # The same seed gives the same file.
    out2 = tmp_path / "again.txt"
    assert main(["data", "pairs", str(ids), "--out", str(out2), "--lfw-layout", str(tmp_path / "l2"),
                 "--seed", "3"]) == 0
    assert out2.read_bytes() == out.read_bytes()


def test_lfw_named_folder_needs_no_links(tmp_path, lfw_root):
    # A few LFW people with 4+ photos, copied as they are (already <Name>/<Name>_NNNN.jpg).
    ids = tmp_path / "lfw_ids"
    people = [p for p in sorted(lfw_root.iterdir()) if len(list(p.glob("*.jpg"))) >= 4][:8]
    for p in people:
        shutil.copytree(p, ids / p.name)
    out = tmp_path / "pairs.txt"
    assert main(["data", "pairs", str(ids), "--out", str(out), "--folds", "2", "--per-fold", "5"]) == 0
    pairs = read_pairs(out, ids, resolve="raw")
    assert (pairs.n_folds, pairs.per_class) == (2, 5)
    for a, b, same in pairs.pairs:
        assert (a.parent == b.parent) == same


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeface: error:") and "\n" not in err, err
    return err


def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path, ids, capsys):
    out = tmp_path / "pairs.txt"
    links = ["--lfw-layout", str(tmp_path / "links")]
    assert main(["data", "pairs", str(ids), "--out", str(out)]) == 2
    assert "--lfw-layout" in _one_line_error(capsys)
    assert main(["data", "pairs", str(ids), "--out", str(out), *links, "--per-fold", "100000"]) == 2
    assert "allow 1 to" in _one_line_error(capsys)
    assert main(["data", "pairs", str(ids), "--out", str(out), *links, "--folds", "13"]) == 2
    assert "fewer --folds" in _one_line_error(capsys)
    assert main(["data", "pairs", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not found" in _one_line_error(capsys)
    # A person of ROOT also in the training folder.
    train = tmp_path / "train"
    shutil.copytree(next(p for p in sorted(ids.iterdir())), train / sorted(ids.iterdir())[0].name)
    assert main(["data", "pairs", str(ids), "--out", str(out), *links, "--train", str(train)]) == 2
    assert "also in the training folder" in _one_line_error(capsys)
    assert not out.exists() and not (tmp_path / "links").exists()


@pytest.mark.slow
def test_bench_accepts_the_pairs_file(tmp_path, celeba_root, capsys):
    ids = _identity_folder(tmp_path / "ids", celeba_root, people=8, per_person=3)
    out, links = tmp_path / "pairs.txt", tmp_path / "links"
    model = Path(__file__).resolve().parents[1] / "models" / "edgeface_face_int8.tflite"
    if not model.is_file():
        pytest.skip(f"no shipped model at {model}")
    assert main(["data", "pairs", str(ids), "--out", str(out), "--lfw-layout", str(links), "--folds", "2"]) == 0
    os.environ["EDGEFACE_CACHE"] = str(tmp_path / "cache")  # the bench aligns the links once, here
    try:
        assert main(["bench", str(model), "--lfw", str(links), "--pairs", str(out), "--threads", "1", "--runs", "2",
                     "--warmup", "0", "--e2e-images", "0", "--json", str(tmp_path / "b.json")]) == 0
    finally:
        del os.environ["EDGEFACE_CACHE"]
    res = json.loads((tmp_path / "b.json").read_text())
    lfw = res["models"][0]["lfw"]
    assert lfw is not None and 0.5 < lfw["accuracy"] <= 1.0
    assert res["lfw_setup"]["n_pairs"] == read_pairs(out).__len__()
