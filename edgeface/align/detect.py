"""Face detection with five landmarks: the mtcnn package (TensorFlow) on workstations.

MTCNN's P-Net pyramid cost grows with the image area, so large images are downscaled before
detection and boxes/landmarks are mapped back to the original pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


class MTCNNDetector:
    """The mtcnn package's P/R/O-Net cascade (weights ship inside the package)."""

    def __init__(self, min_face_size: int = 20, max_side: int = 640, thresholds=(0.6, 0.7, 0.8)):
        import edgeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = thresholds

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, int]:
        """(image to detect on, its scale, mtcnn min_face_size)."""
        import cv2

        h, w = image.shape[:2]
        # mtcnn 1.0 sizes its pyramid as if min_face_size were 12-20: a larger value (e.g. 40) starts
        # the pyramid too small and finds nothing. So we shrink the image instead (a min_face_size
        # face becomes 20 px), which is the same pyramid at a fraction of the cost.
        scale = min(1.0, self.max_side / float(max(h, w)), 20.0 / self.min_face_size)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1.0 else image
        return small, scale, max(12, min(20, int(round(self.min_face_size * scale))))

    def _run(self, images, min_face_size: int):
        return self._mtcnn.detect_faces(
            images, output_type="numpy", box_format="xyxy", min_face_size=min_face_size,
            threshold_pnet=self.thresholds[0], threshold_rnet=self.thresholds[1], threshold_onet=self.thresholds[2])

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, with float landmarks in the image's own pixels."""
        small, scale, mfs = self._prepare(image)
        rows = self._run(small, mfs)
        if rows is None or len(rows) == 0:
            return []
        return faces_from_rows(rows, scale)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """`detect` for many images: same-size images go through mtcnn as one batch.

        Batching cuts MTCNN's CPU time per 250x250 image about 4x (per-op overhead dominates
        these small graphs). Same faces as `detect`; landmarks agree within a pixel (TF kernels batch differently).
        """
        prepared = [self._prepare(im) for im in images]
        groups: dict[tuple, list[int]] = {}
        for i, (small, _, mfs) in enumerate(prepared):
            groups.setdefault((small.shape, mfs), []).append(i)
        out: list[list[Face]] = [[] for _ in images]
        for (_, mfs), idx in groups.items():
            if len(idx) == 1:
                out[idx[0]] = self.detect(images[idx[0]])
                continue
            rows = self._run([prepared[i][0] for i in idx], mfs)
            rows = np.zeros((0, 16)) if rows is None else np.asarray(rows).reshape(-1, 16)
            for j, i in enumerate(idx):
                out[i] = faces_from_rows(rows[rows[:, 0] == j], prepared[i][1])
        return out
