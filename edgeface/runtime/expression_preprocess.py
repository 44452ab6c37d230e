"""The expression models' preprocessing, as their card describes it (TF-free): training, bench and
`edgeface expression` all call this one function, so the live input is the training input."""
from __future__ import annotations

import cv2
import numpy as np

from edgeface.align.transform import clahe as clahe_op


def preprocess(rgb: np.ndarray, size: int, channels: int = 3, use_clahe: bool = True) -> np.ndarray:
    """RGB/gray uint8 -> grayscale (+CLAHE) resized to size x size, uint8 (size, size, channels)."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if use_clahe:  # on the native resolution, before resizing (the seeds' order)
        gray = clahe_op(gray)
    if gray.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (size, size), interpolation=interp)
    return np.repeat(gray[:, :, None], channels, axis=2)
