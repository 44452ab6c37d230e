"""Shared fixtures. Tests that need ../shared/data skip with a clear reason when it is absent."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import edgeface  # noqa: F401  (TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from edgeface.utils.paths import shared_data, shared_root

os.environ.setdefault("EDGEFACE_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("shared data not found: set EDGEFACE_DATA or place it at ../shared/data")
    return root


@pytest.fixture(scope="session")
def lfw_root(data_root) -> Path:
    p = data_root / "lfw" / "lfw-deepfunneled"
    if not p.is_dir():
        pytest.skip(f"LFW not found at {p}")
    return p


@pytest.fixture(scope="session")
def lfw_pairs(data_root) -> Path:
    p = data_root / "lfw" / "pairs.txt"
    if not p.is_file():
        pytest.skip(f"LFW pairs.txt not found at {p}")
    return p


@pytest.fixture(scope="session")
def celeba_root(data_root) -> Path:
    p = data_root / "faces" / "celeba"
    if not p.is_dir():
        pytest.skip(f"CelebA training faces not found at {p}")
    return p


@pytest.fixture(scope="session")
def expressions_root(data_root) -> Path:
    p = data_root / "expressions"
    if not p.is_dir():
        pytest.skip(f"expression datasets not found at {p}")
    return p


@pytest.fixture(scope="session")
def teachers_root() -> Path:
    root = shared_root()
    if root is None or not (root / "teachers").is_dir():
        pytest.skip("teacher models not found: ../shared/teachers")
    return root / "teachers"


_ALIGNED: dict[tuple[int, int], Path] = {}


def aligned_celeba_subset(tmp_path_factory, celeba_root: Path, n_ids: int, per_id: int) -> Path:
    """The first n_ids CelebA identities with >= per_id photos, per_id each, aligned by the real
    MTCNN pipeline into a temporary folder (<identity>/<crop>.png).

    The pipeline runs once per (n_ids, per_id) in a session (test modules ask for the same subset);
    every caller gets its own fresh copy of that output, so no test sees another's writes."""
    key = (n_ids, per_id)
    if key not in _ALIGNED:
        from edgeface.align.pipeline import align_folder

        src = tmp_path_factory.mktemp("celeba_src")
        ids = [d for d in sorted(celeba_root.iterdir()) if d.is_dir() and len(list(d.iterdir())) >= per_id][:n_ids]
        for d in ids:
            (src / d.name).mkdir()
            for f in sorted(d.iterdir())[:per_id]:
                os.symlink(f, src / d.name / f.name)
        master = tmp_path_factory.mktemp("celeba_aligned_master")
        summary = align_folder(src, master, workers=0)
        assert summary["total"] == n_ids * per_id
        _ALIGNED[key] = master
    dst = tmp_path_factory.mktemp("celeba_aligned")
    shutil.copytree(_ALIGNED[key], dst, dirs_exist_ok=True)
    return dst
