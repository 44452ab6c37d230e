"""Folder scanning and leakage-free splits."""
import numpy as np
import pytest

from edgeface.data.folders import jaffe_subject, scan_folder, split_by_identity, split_stratified
from edgeface.errors import EdgefaceError


@pytest.fixture
def synthetic(tmp_path):
    # 12 classes with 2..13 "images" (contents irrelevant for scanning) + things to ignore.
    for c in range(12):
        d = tmp_path / f"id{c:02d}"
        d.mkdir()
        for i in range(2 + c):
            (d / f"{c}_{i}.jpg").write_bytes(b"x")
        (d / "Thumbs.db").write_bytes(b"x")
        (d / ".DS_Store").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "a.jpg").write_bytes(b"x")
    (tmp_path / "README.txt").write_text("x")
    return tmp_path


def test_scan(synthetic):
    f = scan_folder(synthetic)
    assert f.class_names == [f"id{c:02d}" for c in range(12)]
    assert len(f) == sum(2 + c for c in range(12))
    assert f.counts["id00"] == 2 and f.counts["id11"] == 13
    assert all(p.endswith(".jpg") for p in f.paths)
    assert [f.class_names[l] for l in f.labels] == [p.split("/")[-2] for p in f.paths]
    assert len(scan_folder(synthetic, min_images=10)) == sum(2 + c for c in range(8, 12))
    kept = scan_folder(synthetic, exclude=["id03", "id07"])  # e.g. the CelebA people who are LFW people
    assert kept.class_names == [f"id{c:02d}" for c in range(12) if c not in (3, 7)]
    assert len(kept) == len(f) - (2 + 3) - (2 + 7)


def test_scan_errors(tmp_path):
    with pytest.raises(EdgefaceError, match="not found"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(EdgefaceError, match="no images"):
        scan_folder(tmp_path)


def test_split_by_identity_disjoint_and_deterministic(synthetic):
    f = scan_folder(synthetic)
    tr, va = split_by_identity(f, 0.25, seed=7)
    assert len(tr) + len(va) == len(f)
    assert not set(tr.labels) & set(va.labels)
    assert len(set(va.labels)) == 3
    tr2, va2 = split_by_identity(f, 0.25, seed=7)
    assert tr2.paths == tr.paths and va2.paths == va.paths
    _, va3 = split_by_identity(f, 0.25, seed=8)
    assert va3.paths != va.paths
    assert tr.class_names == f.class_names  # labels keep their meaning
    with pytest.raises(EdgefaceError):
        split_by_identity(f, 1.0)


def test_split_stratified_keeps_class_proportions(synthetic):
    f = scan_folder(synthetic, min_images=10)
    parts = split_stratified(f, (0.8, 0.1, 0.1), seed=1)
    assert sum(len(p) for p in parts) == len(f)
    assert set().union(*[set(p.paths) for p in parts]) == set(f.paths)
    assert not set(parts[0].paths) & set(parts[1].paths)
    for c, n in f.counts.items():
        assert abs(parts[0].counts[c] - 0.8 * n) <= 1 and parts[1].counts[c] >= 1
    again = split_stratified(f, (0.8, 0.1, 0.1), seed=1)
    assert [p.paths for p in again] == [p.paths for p in parts]
    with pytest.raises(EdgefaceError):
        split_stratified(f, (0.5, 0.4))


def test_jaffe_split_by_subject(expressions_root):
    f = scan_folder(expressions_root / "jaffe")
    assert len(f) == 213 and len(f.class_names) == 7
    parts = split_stratified(f, (0.7, 0.15, 0.15), seed=0, group_fn=jaffe_subject)
    subjects = [{jaffe_subject(p) for p in part.paths} for part in parts]
    assert all(subjects) and not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert len(set().union(*subjects)) == 10
    tr, va = split_by_identity(f, 0.2, seed=0, group_fn=jaffe_subject)
    assert {jaffe_subject(p) for p in va.paths}.isdisjoint({jaffe_subject(p) for p in tr.paths})
    assert len(set(va.labels)) == 7  # every expression still in validation


def test_celeba_identity_split(celeba_root):
    f = scan_folder(celeba_root)
    assert len(f) == 5266 and f.num_classes == 259
    tr, va = split_by_identity(f, 0.1, seed=0)
    assert not set(tr.labels) & set(va.labels) and va.num_classes == 259
    assert np.isclose(len(set(va.labels)), 26, atol=1)
