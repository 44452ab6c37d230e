"""Model cards record paths without the machine that wrote them (portable_path / portable)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeface.utils.paths import REPO_ROOT, portable, portable_path, shared_root


def test_portable_path_rules(tmp_path):
    assert portable_path(REPO_ROOT / "runs" / "face_edge") == "runs/face_edge"
    assert portable_path("cache/celeba/views8") == "cache/celeba/views8"  # relative: kept
    assert portable_path(tmp_path / "faces") == "faces"  # outside any checkout: the name only
    # another checkout (a clone elsewhere, with its own pyproject.toml): relative to it
    clone = tmp_path / "clone"
    (clone / "runs" / "r1").mkdir(parents=True)
    (clone / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert portable_path(clone / "runs" / "r1") == "runs/r1"
    shared = shared_root()
    if shared is not None:
        assert portable_path(shared / "data" / "lfw" / "pairs.txt") == "../shared/data/lfw/pairs.txt"


def test_portable_rewrites_paths_inside_strings_and_leaves_the_rest():
    card = {"source": {"run_dir": str(REPO_ROOT / "runs" / "x")}, "n": 3, "ok": None,
            "training_data": f"{REPO_ROOT}/cache/celeba/views8 + label-free: cache/distill/m",
            "command": f"edgeface bench {REPO_ROOT}/models/a.tflite --json /tmp/out/bench.json",
            "license": "see https://example.org/terms; float32/float16 kept", "list": [Path("/a/b/c.txt")]}
    out = portable(card)
    assert out["source"]["run_dir"] == "runs/x" and out["n"] == 3 and out["ok"] is None
    assert out["training_data"] == "cache/celeba/views8 + label-free: cache/distill/m"
    assert out["command"] == "edgeface bench models/a.tflite --json bench.json"
    assert out["license"] == card["license"] and out["list"] == ["c.txt"]
    assert '"/' not in json.dumps(out)
