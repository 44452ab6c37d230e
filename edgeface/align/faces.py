"""Detected faces and what both MTCNN back-ends share (TF-free): the TensorFlow one in
`edgeface.align.detect` and the TFLite one in `edgeface.runtime.detector`."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Face:
    box: np.ndarray        # (4,) x, y, w, h in image pixels
    landmarks: np.ndarray  # (5, 2) left eye, right eye, nose, mouth left, mouth right
    score: float
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "score": round(float(self.score), 5)}


def pick_main_face(faces: list[Face], image_shape) -> Face | None:
    """The largest, most central face: area discounted by distance from the image centre."""
    if not faces:
        return None
    h, w = image_shape[:2]
    centre = np.array([w / 2.0, h / 2.0])
    diag = float(np.hypot(w, h))

    def rank(f: Face) -> float:
        x, y, bw, bh = f.box
        offset = np.linalg.norm(np.array([x + bw / 2.0, y + bh / 2.0]) - centre) / diag
        return bw * bh * (1.0 - offset) ** 2

    return max(faces, key=rank)


def faces_from_rows(rows: np.ndarray, scale: float = 1.0) -> list[Face]:
    """mtcnn's (n, 16) rows -> Faces in original pixels.

    Row layout: [img, x1, y1, x2, y2, conf, x_le, x_re, x_nose, x_ml, x_mr, y_le, y_re, y_nose, y_ml, y_mr]
    (the five x coordinates first, then the five y: not interleaved).
    """
    faces = []
    for r in np.asarray(rows, dtype=np.float64).reshape(-1, 16):
        x1, y1, x2, y2 = r[1:5] / scale
        faces.append(Face(box=np.array([x1, y1, x2 - x1, y2 - y1]), landmarks=np.stack([r[6:11], r[11:16]], axis=1) / scale,
                          score=float(r[5])))
    return faces


def shrink_for_detection(image: np.ndarray, max_side: int, min_face_size: int) -> tuple[np.ndarray, float, int]:
    """(image to detect on, its scale, the min_face_size to give mtcnn's pyramid there).

    P-Net's cost grows with the image area, so the longer side is capped at max_side. And mtcnn 1.0
    sizes its pyramid as if min_face_size were 12-20: a larger value (e.g. 40) starts the pyramid
    too small and finds nothing. So the image shrinks instead (a min_face_size face becomes 20 px),
    the same pyramid at a fraction of the cost. Boxes found on it are divided by the scale.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)), 20.0 / min_face_size)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    return small, scale, max(12, min(20, int(round(min_face_size * scale))))
