"""Pyramid of histograms of oriented gradients (PHOG, Bosch, Zisserman & Munoz 2007), numpy only.

Gradients by central differences with the border replicated: gx = f(x+1) - f(x-1),
gy = f(y+1) - f(y-1) (y runs down the rows). Each pixel votes its magnitude sqrt(gx^2 + gy^2)
into one of `bins` orientation bins of theta = atan2(gy, gx), over 0-180 deg (unsigned,
`angle=180`) or 0-360 deg (signed, `angle=360`); bin k covers [k, k+1) * angle / bins.
Level l splits the image into a 2^l x 2^l grid (cell r holds rows floor(r*H/2^l) .. ) and keeps a
histogram per cell; levels 0..L are concatenated level by level, cells row-major:
length bins * sum_l 4^l (bins=8, L=2: 168; L=3: 680).

Every level covers every pixel once, so without normalisation each level's histograms sum to
the same total gradient magnitude; normalise_by="sum" divides the whole vector by its sum (as
Bosch et al.), so each level sums to 1 / (L + 1).
"""
from __future__ import annotations

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.features._common import as_gray, cell_histograms


def phog_length(bins: int = 8, levels: int = 2) -> int:
    return int(bins * sum(4 ** l for l in range(levels + 1)))


def gradients(img) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude, theta in degrees [0, 360)) by central differences, border replicated."""
    f = as_gray(img, min_size=1)
    p = np.pad(f, 1, mode="edge")
    gx = p[1:-1, 2:] - p[1:-1, :-2]
    gy = p[2:, 1:-1] - p[:-2, 1:-1]
    theta = np.degrees(np.arctan2(gy, gx)) % 360.0
    return np.hypot(gx, gy), theta


def phog(img, bins: int = 8, levels: int = 2, angle: int = 180, normalise_by: str | None = "sum") -> np.ndarray:
    """PHOG descriptor ((phog_length(bins, levels),) float64)."""
    if int(bins) != bins or bins < 1:
        raise EdgefaceError(f"bins must be a positive int, got {bins!r}")
    if int(levels) != levels or not 0 <= levels <= 6:
        raise EdgefaceError(f"levels must be an int in 0..6, got {levels!r}")
    if angle not in (180, 360):
        raise EdgefaceError(f"angle must be 180 (unsigned) or 360 (signed), got {angle!r}")
    f = as_gray(img, min_size=2 ** int(levels))
    mag, theta = gradients(f)
    theta = theta % angle
    b = np.minimum((theta * bins / angle).astype(np.int64), bins - 1)
    out = [cell_histograms(b, int(bins), (2 ** l, 2 ** l), weights=mag).ravel() for l in range(int(levels) + 1)]
    v = np.concatenate(out)
    if normalise_by is None or normalise_by == "none":
        return v
    if normalise_by == "sum":
        s = v.sum()
    elif normalise_by == "l2":
        s = np.linalg.norm(v)
    else:
        raise EdgefaceError(f"normalise_by must be 'sum', 'l2' or None, got {normalise_by!r}")
    return v / s if s > 0 else v
