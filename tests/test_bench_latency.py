"""edgeface.bench.latency.side_by_side: the files and the ncnn teacher timed alternately on one thread.

Real shipped files, the real interpreter and the real ncnn teacher; no timing target (those live in
`make bench`), only what the function promises: one median per file, in milliseconds, and the teacher's."""
from __future__ import annotations

import pytest

from conftest import REPO

TEACHER = REPO.parent / "shared" / "teachers" / "mobilefacenet-ncnn"


def test_side_by_side_returns_one_median_per_file_and_the_teachers():
    from edgeface.bench.latency import side_by_side

    files = [REPO / "models" / "edgeface_face_micro_int8.tflite", REPO / "models" / "edgeface_expr_fer_int8.tflite"]
    if not all(f.is_file() for f in files) or not TEACHER.is_dir():
        pytest.skip("shipped files or the shared ncnn teacher missing")
    ms, teacher = side_by_side(files, TEACHER, repeats=2, runs=5, warmup=1)
    assert list(ms) == [str(f) for f in files]
    assert all(0.0 < v < 10_000 for v in ms.values()) and 0.0 < teacher < 10_000
    alone, none = side_by_side(files[:1], None, repeats=1, runs=3, warmup=1)
    assert none is None and list(alone) == [str(files[0])]
