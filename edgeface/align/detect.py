"""Face detection with five landmarks: the mtcnn package (TensorFlow) on workstations.

Large images are downscaled before detection (`edgeface.align.faces.shrink_for_detection`, shared
with the TFLite detector) and boxes/landmarks are mapped back to the original pixels.
"""
from __future__ import annotations

import numpy as np

from edgeface.align.faces import Face, faces_from_rows, shrink_for_detection


class MTCNNDetector:
    """The mtcnn package's P/R/O-Net cascade (weights ship inside the package)."""

    def __init__(self, min_face_size: int = 20, max_side: int = 640, thresholds=(0.6, 0.7, 0.8)):
        import edgeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = thresholds

    def _run(self, images, min_face_size: int):
        return self._mtcnn.detect_faces(
            images, output_type="numpy", box_format="xyxy", min_face_size=min_face_size,
            threshold_pnet=self.thresholds[0], threshold_rnet=self.thresholds[1], threshold_onet=self.thresholds[2])

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, with float landmarks in the image's own pixels."""
        small, scale, mfs = shrink_for_detection(image, self.max_side, self.min_face_size)
        rows = self._run(small, mfs)
        if rows is None or len(rows) == 0:
            return []
        return faces_from_rows(rows, scale)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """`detect` for many images: same-size images go through mtcnn as one batch.

        Batching cuts MTCNN's CPU time per 250x250 image about 4x (per-op overhead dominates
        these small graphs). Same faces as `detect`; landmarks agree within a pixel (TF kernels batch differently).
        """
        prepared = [shrink_for_detection(im, self.max_side, self.min_face_size) for im in images]
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
