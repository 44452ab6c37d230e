"""`make demo`: the main job on a built-in default.

Takes the shipped int8 face model and runs the whole TF-free on-device pipeline (decode, MTCNN
detect as .tflite, 5-point align, embed, cosine) on real face pairs, then says same/different with
the model card's LFW-calibrated threshold:
- with the shared data: the first 5 same-person and 5 different-person pairs of LFW View 2 fold 1;
- without it: matplotlib's bundled public-domain portrait of Grace Hopper against a rotated,
  rescaled, mirrored and re-compressed copy of itself (same person), as a self-check.
Writes demo_out/pairs.png (the aligned crops with scores) and prints stage timings.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.cli import default_model
from edgeface.runtime.pipeline import FacePipeline
from edgeface.utils.images import read_image, write_image
from edgeface.utils.paths import REPO_ROOT, shared_data


def lfw_demo_pairs(n: int = 5):
    """(label, path_a, path_b, same) for the first n same and n different pairs of fold 1."""
    from edgeface.data.pairs import read_pairs

    root = shared_data()
    if root is None or not (root / "lfw" / "pairs.txt").exists():
        return None
    image_root = root / "lfw" / "lfw-deepfunneled"
    fold = read_pairs(root / "lfw" / "pairs.txt", image_root=image_root).folds[0]
    same = [p for p in fold if p[2]][:n]
    diff = [p for p in fold if not p[2]][:n]
    return [(f"{Path(a).stem} vs {Path(b).stem}", read_image(a), read_image(b), s) for a, b, s in same + diff]


def builtin_pair():
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    a = read_image(path)
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 8.0, 0.8)
    b = cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REFLECT)[:, ::-1]
    ok, buf = cv2.imencode(".jpg", b, [cv2.IMWRITE_JPEG_QUALITY, 40])
    b = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return [("grace_hopper vs its rotated, mirrored, JPEG-40 copy", a, np.ascontiguousarray(b), True)]


def main() -> int:
    model = default_model()
    pipe = FacePipeline(model)
    threshold = pipe.embedder.threshold
    if threshold is None:
        raise EdgefaceError(f"{model.name} has no verification threshold in its card: run `make bench`")
    pairs = lfw_demo_pairs() or builtin_pair()
    print(f"model {model.name} ({model.stat().st_size:,} bytes, {pipe.embedder.model.backend}), "
          f"threshold {threshold:.3f} (from its card)")
    rows, tiles, correct = [], [], 0
    for label, a, b, same in pairs:
        _, ca, ea = pipe.main_face(a, "a", fallback_crop=True)
        _, cb, eb = pipe.main_face(b, "b", fallback_crop=True)
        score = float(ea @ eb)
        said_same = score >= threshold
        correct += said_same == same
        rows.append(f"  {'same' if same else 'diff'}  cos {score:+.3f} -> {'SAME' if said_same else 'DIFFERENT':9s} "
                    f"{'ok ' if said_same == same else 'WRONG'}  {label}")
        tile = np.hstack([ca, cb]).copy()
        cv2.putText(tile, f"{score:+.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 255, 0) if said_same == same else (255, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    print("\n".join(rows))
    print(f"{correct}/{len(pairs)} decided correctly")
    t = pipe.times.medians()
    print("median ms per call: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    out = REPO_ROOT / "demo_out" / "pairs.png"
    write_image(out, np.vstack(tiles))
    print(f"aligned pairs with scores: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgefaceError as e:
        print(f"edgeface: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
