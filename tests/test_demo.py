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
    assert "1/1 decided correctly" in out and "Grace Hopper" in out
    assert picture_size()[1] < 300  # one row


def picture_size() -> tuple[int, int]:
    """(width, height) of demo_out/pairs.png: a row of about 125 px per pair under a title and legend."""
    from edgeface.utils.images import read_image

    h, w = read_image(REPO_ROOT / "demo_out" / "pairs.png").shape[:2]
    return w, h


def test_demo_on_lfw_pairs(lfw_pairs, capsys):
    import edgeface.demo as demo

    assert demo.main() == 0
    out = capsys.readouterr().out
    decided = int(out.split(" decided correctly")[0].rsplit("\n", 1)[-1].split("/")[0])
    assert "/10 decided correctly" in out and decided >= 8, out
    assert "threshold 0." in out and "edgeface_face_int8.json" in out  # the threshold and where it came from
    w, h = picture_size()
    assert w >= 700 and 10 * 110 < h < 10 * 140 + 150
