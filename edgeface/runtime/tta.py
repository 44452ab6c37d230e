"""Test-time augmentation for classifiers (no TensorFlow): each face classified in several views,
the class probabilities averaged.

- ``none``: the face as it is.
- ``flip``: the face and its left-right mirror.
- ``ten``: the FER literature's ten-crop without shrinking the input: the face and four copies shifted
  diagonally by ``shift`` pixels (borders reflected, as the training augmentation's warps are), each
  with its mirror.

The expression trainer augments with shifts of up to 10% of the side and with mirrors, so every view
is one the network was trained on.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.spec import TTA_MODES as MODES

# The ten-view shift as a fraction of the side: 1 pixel at 48x48, chosen on FER2013's validation split
# with the round-4 model (benchmarks/expressions.md, "Test-time augmentation").
TEN_SHIFT = 1 / 48
_CORNERS = ((1, 1), (1, -1), (-1, 1), (-1, -1))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise EdgefaceError(f"test-time augmentation must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(N, H, W, C) images moved by (dx, dy) pixels, the uncovered border reflected (no interpolation)."""
    h, w = x.shape[1:3]
    pad = max(abs(dx), abs(dy))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (x.ndim - 3), mode="reflect")
    return np.ascontiguousarray(padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w])


def views(x: np.ndarray, mode: str, shift: int | None = None) -> list[np.ndarray]:
    """The views of a batch (N, H, W, C) that `mode` averages over, the batch itself first.
    shift: pixels for "ten" [default: TEN_SHIFT of the side, at least 1]."""
    check_mode(mode)
    bases = [x]
    if mode == "ten":
        d = max(1, round(TEN_SHIFT * x.shape[2])) if shift is None else int(shift)
        bases += [shifted(x, sx * d, sy * d) for sx, sy in _CORNERS]
    if mode == "none":
        return bases
    return [v for b in bases for v in (b, np.ascontiguousarray(b[:, :, ::-1]))]


def average(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, mode: str,
            shift: int | None = None) -> np.ndarray:
    """The mean of `predict` (a batch -> (N, K) probabilities) over the views of `x`."""
    outs = [predict(v) for v in views(x, mode, shift)]
    return np.mean(outs, axis=0).astype(np.float32)
