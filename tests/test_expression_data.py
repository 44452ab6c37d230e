"""Expression datasets: deterministic, disjoint splits; subject-disjoint JAFFE; CLAHE; augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.runtime.expression_preprocess import preprocess
from edgeface.utils.images import read_image


def _names(split):
    return [s.path.name for s in split]


def test_ckplus_split_is_deterministic_stratified_and_disjoint(expressions_root):
    root = expressions_root / "ckplus48"
    a = xdata.load_dataset(root, seed=0)
    b = xdata.load_dataset(root, seed=0)
    c = xdata.load_dataset(root, seed=1)
    assert a.kind == "ckplus48" and len(a.class_names) == 7
    for split in xdata.SPLITS:
        assert _names(a.splits[split]) == _names(b.splits[split])
    assert _names(a.splits["test"]) != _names(c.splits["test"])
    paths = [set(s.path for s in a.splits[k]) for k in xdata.SPLITS]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert sum(map(len, paths)) == 981
    # stratified 80/10/10: every class in every split, in proportion
    for split, frac in (("val", 0.1), ("test", 0.1)):
        counts = np.bincount([s.label for s in a.splits[split]], minlength=7)
        totals = np.bincount([s.label for k in xdata.SPLITS for s in a.splits[k]], minlength=7)
        assert (counts >= 1).all()
        assert np.all(np.abs(counts - frac * totals) <= 1)


def test_ckplus_subject_split_is_identity_disjoint(expressions_root):
    d = xdata.load_dataset(expressions_root / "ckplus48", split_by="subject")
    subj = {k: {s.subject for s in d.splits[k]} for k in xdata.SPLITS}
    assert all(s.startswith("S") for s in subj["train"])
    assert not (subj["train"] & subj["test"] or subj["train"] & subj["val"] or subj["val"] & subj["test"])


def test_jaffe_split_is_by_subject(expressions_root):
    a = xdata.load_dataset(expressions_root / "jaffe", seed=3)
    b = xdata.load_dataset(expressions_root / "jaffe", seed=3)
    assert a.split_spec["split_by"] == "subject"
    subj = {k: {s.path.name[:2] for s in a.splits[k]} for k in xdata.SPLITS}
    assert not (subj["train"] & subj["test"] or subj["train"] & subj["val"] or subj["val"] & subj["test"])
    assert len(subj["train"] | subj["val"] | subj["test"]) == 10
    assert subj["test"] and subj["val"]
    assert _names(a.splits["test"]) == _names(b.splits["test"])
    assert "neutral" in a.class_names


def test_fer2013_keeps_its_own_test_split(expressions_root):
    d = xdata.load_dataset(expressions_root / "fer2013")
    assert d.kind == "fer2013" and d.split_spec["split_by"] == "official"
    assert all(s.path.parent.parent.name == "test" for s in d.splits["test"])
    assert all(s.path.parent.parent.name == "train" for s in d.splits["train"] + d.splits["val"])
    assert len(d.splits["test"]) == 3589
    assert len(d.splits["train"]) + len(d.splits["val"]) == 7636
    assert not set(s.path for s in d.splits["train"]) & set(s.path for s in d.splits["val"])


def test_clahe_raises_local_contrast_of_a_washed_out_face(expressions_root):
    path = sorted((expressions_root / "ckplus48" / "happy").iterdir())[0]
    gray = read_image(path)[:, :, 0]
    washed = (100 + 0.15 * gray.astype(np.float32)).astype(np.uint8)  # contrast squeezed into ~38 levels
    plain = preprocess(washed, 48, 1, use_clahe=False)[:, :, 0]
    eq = preprocess(washed, 48, 1, use_clahe=True)[:, :, 0]
    assert plain.std() < 10
    assert eq.std() > 2 * plain.std()
    assert np.corrcoef(eq.ravel().astype(float), gray.ravel().astype(float))[0, 1] > 0.7  # same face, more contrast
    rgb = preprocess(read_image(path), 64, 3, use_clahe=True)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 2])  # gray replicated for RGB backbones


def test_augment_is_seeded_and_keeps_shape(expressions_root):
    d = xdata.load_dataset(expressions_root / "ckplus48")
    x, _ = xdata.load_images(d.splits["val"][:8], 48, 1)
    a = xdata.augment(x, np.random.default_rng(5))
    b = xdata.augment(x, np.random.default_rng(5))
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - x.astype(int)).mean() > 3


def test_random_erase_changes_one_rectangle_per_chosen_image(expressions_root):
    d = xdata.load_dataset(expressions_root / "ckplus48")
    x, _ = xdata.load_images(d.splits["val"][:40], 48, 1)
    assert np.array_equal(xdata.random_erase(x, np.random.default_rng(0), 0.0), x)
    e = xdata.random_erase(x, np.random.default_rng(1), 1.0)
    assert np.array_equal(e, xdata.random_erase(x, np.random.default_rng(1), 1.0)) and e.dtype == np.uint8
    for before, after in zip(x[..., 0], e[..., 0]):
        rows, cols = np.nonzero(before != after)
        assert len(rows)  # every image was erased (a noise pixel equal to the original is rare)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box <= 0.2 * 48 * 48 + 48 and len(rows) >= 0.9 * box  # one filled rectangle, within the area bound
    half = xdata.random_erase(x, np.random.default_rng(2), 0.5)
    assert 8 <= sum(not np.array_equal(a, b) for a, b in zip(x, half)) <= 32


def test_mixup_blends_pairs_in_the_drawn_proportions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 7, 64)
    mixed, ya, yb, lam = xdata.mixup(x, y, np.random.default_rng(3), 0.2)
    partner = np.random.default_rng(3).permutation(64)  # the function's first draw
    assert np.array_equal(ya, y) and np.array_equal(yb, y[partner])
    assert lam.shape == (64,) and lam.min() >= 0.5 and lam.max() <= 1.0
    np.testing.assert_allclose(mixed, lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner],
                               rtol=1e-6, atol=1e-6)
    assert mixed.dtype == np.float32


def test_bad_dataset_folders_fail_with_one_line(tmp_path):
    with pytest.raises(EdgefaceError, match="not found"):
        xdata.load_dataset(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(EdgefaceError, match="one sub-folder per class"):
        xdata.load_dataset(tmp_path)
    (tmp_path / "two").mkdir()
    with pytest.raises(EdgefaceError, match="no images"):
        xdata.load_dataset(tmp_path)
