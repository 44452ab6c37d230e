"""`make demo` runs edgeface.demo: the shipped int8 model end to end through the TF-free runtime."""
from __future__ import annotations

import pytest

from edgeface.utils.paths import REPO_ROOT

MODEL = REPO_ROOT / "models" / "edgeface_face_int8.tflite"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason=f"shipped model not built: {MODEL}")


def test_demo_builtin_portrait_without_shared_data(monkeypatch, capsys):
    import edgeface.demo as demo

    monkeypatch.setattr(demo, "lfw_demo_pairs", lambda n=5: None)  # as on a machine without ../shared
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "1/1 decided correctly" in out and "grace_hopper" in out
    assert (REPO_ROOT / "demo_out" / "pairs.png").stat().st_size > 0


def test_demo_on_lfw_pairs(lfw_pairs, capsys):
    import edgeface.demo as demo

    assert demo.main() == 0
    out = capsys.readouterr().out
    decided = int(out.split(" decided correctly")[0].rsplit("\n", 1)[-1].split("/")[0])
    assert "/10 decided correctly" in out and decided >= 8, out
