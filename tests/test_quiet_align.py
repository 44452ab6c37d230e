"""`edgeface align` with worker processes prints no TensorFlow start-up noise (cuInit, CUDA drivers)
on a CPU machine: the workers' native stderr is silenced while they load the detector."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_align_workers_are_quiet(tmp_path, lfw_root):
    src = tmp_path / "src"
    for name in ("Colin_Powell", "Tony_Blair"):
        (src / name).mkdir(parents=True)
        (src / name / f"{name}_0001.jpg").symlink_to(lfw_root / name / f"{name}_0001.jpg")
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEFACE_NO_PROGRESS": "1"}
    r = subprocess.run([sys.executable, "-m", "edgeface", "align", str(src), str(tmp_path / "dst"), "--workers", "2"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "dst").rglob("*.png"))) >= 2
    for noise in ("cuInit", "cuda drivers", "oneDNN", "absl::InitializeLog"):
        assert noise not in r.stderr, r.stderr
