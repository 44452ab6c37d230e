"""Distillation views: view 0 is the exact aligned crop, the others are jittered re-alignments of the
original photo; the manifest lists every view and a rerun resumes instead of redrawing."""
import json

import cv2
import numpy as np

from edgeface.align.transform import get_template, similarity_transform
from edgeface.data.views import make_views
from edgeface.utils.images import read_image, write_image


def test_views_from_an_aligned_manifest(tmp_path):
    rng = np.random.default_rng(0)
    src, aligned = tmp_path / "src", tmp_path / "aligned"
    photo = rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)
    write_image(src / "p1" / "a.png", photo)
    lm = get_template("arcface112").points * 1.6 + 35  # a face at about 1.6x the template size
    aligned.mkdir()
    (aligned / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"source": "p1/a.png", "output": "p1/a.png", "status": "ok", "landmarks": lm.tolist()},
        {"source": "p1/b.png", "output": "p1/b.png", "status": "fallback", "landmarks": None},  # skipped
    ]) + "\n")
    info = make_views(aligned, src, tmp_path / "views", views=3)
    assert info == {"sources": 1, "views": 3}
    recs = [json.loads(line) for line in (tmp_path / "views" / "manifest.jsonl").read_text().splitlines()]
    assert [r["output"] for r in recs] == ["p1/a_v0.png", "p1/a_v1.png", "p1/a_v2.png"]
    clean = cv2.warpAffine(photo, similarity_transform(lm, get_template("arcface112").points), (112, 112),
                           flags=cv2.INTER_LINEAR, borderValue=0)
    v = [read_image(tmp_path / "views" / r["output"]) for r in recs]
    assert np.array_equal(v[0], clean)
    assert all(x.shape == (112, 112, 3) and not np.array_equal(x, clean) for x in v[1:])
    # Resumable: existing views are kept as they are.
    (tmp_path / "views" / "p1" / "a_v2.png").write_bytes(b"kept")
    make_views(aligned, src, tmp_path / "views", views=3)
    assert (tmp_path / "views" / "p1" / "a_v2.png").read_bytes() == b"kept"
