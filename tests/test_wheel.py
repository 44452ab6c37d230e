"""`make wheel` -> dist/edgeface-*.whl, installed as a device would install it: a fresh venv, the
wheel with its `runtime` extra only (no TensorFlow), then `edgeface verify` on real LFW photos with
a shipped model and its card copied beside them, run from a folder outside the repository."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "edgeface_face_int8.tflite"


def device_env() -> dict:
    """The environment of a device: nothing of this checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEFACE_MODEL", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "EDGEFACE_NO_PROGRESS": "1"}


@pytest.mark.slow
def test_wheel_installs_and_verifies_without_tensorflow(tmp_path, lfw_root):
    if not MODEL.is_file():
        pytest.skip(f"{MODEL.relative_to(REPO)} not shipped")
    dist = tmp_path / "dist"
    r = subprocess.run(["make", "-C", str(REPO), "wheel", f"PYTHON={sys.executable}", f"DIST={dist}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wheels = list(dist.glob("edgeface-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, edgeface = venv / "bin" / "python", venv / "bin" / "edgeface"
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{wheels[0]}[runtime]"], env=device_env(),
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], env=device_env(),
                       capture_output=True, text=True, timeout=120, check=True)
    installed = {p["name"].lower() for p in json.loads(r.stdout)}
    assert {"edgeface", "ai-edge-litert", "numpy", "opencv-python-headless", "click"} <= installed
    assert not installed & {"tensorflow", "tensorflow-cpu", "tf-keras", "mtcnn"}, installed

    # What the README says to copy to the device: the model and its card, side by side.
    device = tmp_path / "device"
    device.mkdir()
    for f in (MODEL, MODEL.with_suffix(".json")):
        shutil.copy(f, device / f.name)
    same = [lfw_root / "Colin_Powell" / f"Colin_Powell_000{i}.jpg" for i in (1, 2)]
    different = [same[0], lfw_root / "Amelie_Mauresmo" / "Amelie_Mauresmo_0001.jpg"]
    outputs = []
    for a, b in (same, different):
        r = subprocess.run([str(edgeface), "verify", str(a), str(b), "--model", MODEL.name, "--json"], cwd=device,
                           env=device_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outputs.append(json.loads(r.stdout))
    assert outputs[0]["same"] is True and outputs[1]["same"] is False, outputs
    assert outputs[0]["score"] > outputs[1]["score"]
    assert outputs[0]["threshold_source"].startswith(MODEL.with_suffix(".json").name)
    # the installed package ran, not this checkout, and TensorFlow is not importable there
    r = subprocess.run([str(py), "-c", "import importlib.util as u, edgeface; "
                        "print(edgeface.__file__); print(u.find_spec('tensorflow'))"], cwd=device, env=device_env(),
                       capture_output=True, text=True, timeout=120, check=True)
    where, tf_spec = r.stdout.split()
    assert Path(where).is_relative_to(venv) and tf_spec == "None"
