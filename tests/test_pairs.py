"""LFW pairs.txt parsing and validation (edgeface.data.pairs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.data.pairs import read_pairs
from edgeface.errors import EdgefaceError

# 2 folds x (2 same + 2 different): hand-written, so every count below is known.
SMALL = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Bob\t3\tCid\t1
Cid\t1\t2
Ann\t2\t3
Cid\t2\tAnn\t3
Bob\t2\tCid\t1
"""
IMAGES = {"Ann": 3, "Bob": 3, "Cid": 2}


def make_root(root: Path, ext: str) -> Path:
    for name, n in IMAGES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            (root / name / f"{name}_{i:04d}{ext}").write_bytes(b"x")
    return root


@pytest.fixture
def small(tmp_path) -> Path:
    p = tmp_path / "pairs.txt"
    p.write_text(SMALL)
    return p


def test_small_file_parses_into_folds(small, tmp_path):
    root = make_root(tmp_path / "raw", ".jpg")
    pairs = read_pairs(small, root)
    assert (pairs.n_folds, pairs.per_class, len(pairs), pairs.layout) == (2, 2, 8, "raw")
    assert [len(f) for f in pairs.folds] == [4, 4]
    assert pairs.labels.tolist() == [True, True, False, False] * 2
    assert pairs.fold_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.folds[0][2] == (root / "Ann/Ann_0001.jpg", root / "Bob/Bob_0002.jpg", False)
    assert pairs.lines == [2, 3, 4, 5, 6, 7, 8, 9]
    images, idx = pairs.index_pairs()
    assert len(images) == len(set(images)) == 8  # all 8 files, each once
    assert all(images[i] == a and images[j] == b for (i, j), (a, b, _) in zip(idx, pairs.pairs))


def test_aligned_root_resolves_png(small, tmp_path):
    root = make_root(tmp_path / "aligned", ".png")
    (root / "manifest.jsonl").write_text("")
    pairs = read_pairs(small, root)  # auto: manifest.jsonl means aligned
    assert pairs.layout == "aligned"
    assert pairs.folds[1][0][0] == root / "Cid/Cid_0001.png"
    # Without a root: relative paths, no existence check.
    rel = read_pairs(small, None, resolve="aligned")
    assert rel.folds[0][0][:2] == (Path("Ann/Ann_0001.png"), Path("Ann/Ann_0002.png"))


def test_missing_image_names_line(small, tmp_path):
    root = make_root(tmp_path / "raw", ".jpg")
    (root / "Bob/Bob_0002.jpg").unlink()
    with pytest.raises(EdgefaceError) as e:
        read_pairs(small, root)
    msg = str(e.value)
    assert "line 4" in msg and "Ann\\t1\\tBob\\t2" in msg and "Bob_0002.jpg" in msg and str(small) in msg


def test_truncated_file(small, tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("".join(SMALL.splitlines(keepends=True)[:7]))  # header + 6 of 8 pair lines
    with pytest.raises(EdgefaceError, match=r"short.txt line 8: file ends early.*8 pair lines, found 6"):
        read_pairs(p)


@pytest.mark.parametrize("lineno, text, reason", [
    (3, "Bob\t1", "expected a same-person line 'name n1 n2', got 2 fields"),
    (3, "Bob\tone\t3", "image number is not an integer ('one')"),
    (4, "Ann\t1\tBob", "expected a different-person line 'name1 n1 name2 n2', got a same-person line"),
    (2, "Ann\t1\tBob\t2", "expected a same-person line 'name n1 n2', got a different-person line"),
    (5, "Bob\t3\tCid\t0", "image number must be >= 1"),
    (2, "Ann\t2\t2", "names the same image twice"),
    (1, "10\t300\t5", "header must be"),
    (1, "ten\t300", "number of folds is not an integer"),
])
def test_malformed_line(tmp_path, lineno, text, reason):
    lines = SMALL.splitlines()
    lines[lineno - 1] = text
    p = tmp_path / "bad.txt"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(EdgefaceError) as e:
        read_pairs(p)
    msg = str(e.value)
    assert f"bad.txt line {lineno}:" in msg and reason in msg and repr(text) in msg


def test_extra_lines_and_empty_and_missing(tmp_path):
    p = tmp_path / "long.txt"
    p.write_text(SMALL + "Ann\t1\t3\n\n\n")
    with pytest.raises(EdgefaceError, match=r"long.txt line 10: more lines than the header promises"):
        read_pairs(p)
    p.write_text(SMALL + "\n\n")  # trailing blank lines are fine
    assert len(read_pairs(p)) == 8
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(EdgefaceError, match="empty"):
        read_pairs(tmp_path / "empty.txt")
    with pytest.raises(EdgefaceError, match="pairs file not found"):
        read_pairs(tmp_path / "nope.txt")


def test_real_lfw_pairs(lfw_pairs, lfw_root):
    pairs = read_pairs(lfw_pairs, lfw_root)
    assert (pairs.n_folds, pairs.per_class, len(pairs), pairs.layout) == (10, 300, 6000, "raw")
    assert int(pairs.labels.sum()) == 3000
    assert np.bincount(pairs.fold_ids).tolist() == [600] * 10
    assert all(f[299][2] and not f[300][2] for f in pairs.folds)  # 300 same, then 300 different, per fold
    assert pairs.folds[0][0] == (lfw_root / "Abel_Pacheco/Abel_Pacheco_0001.jpg",
                                 lfw_root / "Abel_Pacheco/Abel_Pacheco_0004.jpg", True)
    assert len(pairs.unique_images()) == 7701
