"""Teacher target caches: the per-path store, and the read-only set caches beside cleaned data sets."""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import REPO, aligned_celeba_subset


@pytest.fixture(scope="module")
def teacher():
    from edgeface.teachers.base import TFLiteTeacher

    p = REPO / "models" / "edgeface_face_micro_int8.tflite"
    if not p.is_file():
        pytest.skip("micro model not shipped")
    return TFLiteTeacher(p)


def test_set_cache_serves_paths_and_is_copied_into_the_store(tmp_path_factory, celeba_root, teacher):
    from edgeface.teachers.base import save_cache, set_cache, teacher_embeddings

    folder = aligned_celeba_subset(tmp_path_factory, celeba_root, 2, 3)
    paths = sorted(str(p) for p in folder.glob("*/*.png"))
    emb, emb_m = teacher_embeddings(teacher, paths)  # computed: the reference
    # a set cache whose values are marked (x 2) proves they are read, not recomputed
    beside = set_cache(tmp_path_factory.mktemp("set"), "subset")
    save_cache(beside, teacher, {p: (2 * e, 2 * m) for p, e, m in zip(paths[:4], emb[:4], emb_m[:4])})
    store = tmp_path_factory.mktemp("store") / "store.npz"
    got, got_m = teacher_embeddings(teacher, paths, store, also_from=[beside])
    assert np.allclose(got[:4], 2 * emb[:4]) and np.allclose(got_m[:4], 2 * emb_m[:4])
    assert np.allclose(got[4:], emb[4:], atol=1e-5)
    # the store now holds every path, the seeded ones included
    again, _ = teacher_embeddings(teacher, paths, store)
    assert np.allclose(again, got)
    with np.load(store) as z:
        assert sorted(z["paths"].tolist()) == sorted(os.path.abspath(p) for p in paths)


def test_set_cache_of_another_teacher_is_ignored(tmp_path, celeba_root, tmp_path_factory, teacher):
    from edgeface.teachers.base import save_cache, teacher_embeddings

    folder = aligned_celeba_subset(tmp_path_factory, celeba_root, 2, 3)
    paths = sorted(str(p) for p in folder.glob("*/*.png"))[:2]
    emb, _ = teacher_embeddings(teacher, paths)

    class Other:
        sha256, name = "0" * 64, "other"

        @staticmethod
        def describe():
            return {"name": "other"}

    other = tmp_path / "teacher_x.npz"
    save_cache(other, Other, {p: (np.ones(emb.shape[1]), np.ones(emb.shape[1])) for p in paths})
    got, _ = teacher_embeddings(teacher, paths, also_from=[other])
    assert np.allclose(got, emb, atol=1e-5)
