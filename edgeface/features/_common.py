"""Input checks shared by the descriptors."""
from __future__ import annotations

import numpy as np

from edgeface.errors import EdgefaceError


def as_gray(img, name: str = "image", min_size: int = 1) -> np.ndarray:
    """A 2-D float64 grey image from HxW, HxWx1 or HxWx3 (RGB, BT.601 luma); clear errors otherwise."""
    try:
        a = np.asarray(img)
    except Exception as e:  # noqa: BLE001  (ragged lists and the like)
        raise EdgefaceError(f"{name}: not an array ({e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise EdgefaceError(f"{name}: needs a numeric array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] == 3:
        a = a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif a.ndim != 2:
        raise EdgefaceError(f"{name}: needs a 2-D grey image (HxW, HxWx1 or HxWx3), got shape {a.shape}")
    a = a.astype(np.float64)
    if min(a.shape) < min_size:
        raise EdgefaceError(f"{name}: {a.shape[0]}x{a.shape[1]} is smaller than the {min_size}x{min_size} minimum")
    if not np.all(np.isfinite(a)):
        raise EdgefaceError(f"{name}: contains NaN or inf")
    return a


def grid_of(grid, name: str = "grid") -> tuple[int, int]:
    g = (grid, grid) if np.isscalar(grid) else tuple(grid)
    if len(g) != 2 or any(int(v) != v or v < 1 for v in g):
        raise EdgefaceError(f"{name} must be a positive int or (rows, cols), got {grid!r}")
    return int(g[0]), int(g[1])


def cell_histograms(codes: np.ndarray, n_bins: int, grid: tuple[int, int], weights=None) -> np.ndarray:
    """(rows*cols, n_bins) histograms of an integer code map over a rows x cols grid of cells.

    Cell r spans rows floor(r*H/rows) .. floor((r+1)*H/rows) - 1 (every pixel in exactly one cell)."""
    rows, cols = grid
    h, w = codes.shape
    if rows > h or cols > w:
        raise EdgefaceError(f"a {rows}x{cols} grid does not fit a {h}x{w} code map")
    ry = (np.arange(h) * rows) // h
    cx = (np.arange(w) * cols) // w
    cell = (ry[:, None] * cols + cx[None, :]).ravel()
    flat = cell * n_bins + codes.ravel().astype(np.int64)
    wts = None if weights is None else np.asarray(weights, np.float64).ravel()
    return np.bincount(flat, weights=wts, minlength=rows * cols * n_bins).reshape(rows * cols, n_bins).astype(np.float64)


def normalise(hists: np.ndarray, how: str | None) -> np.ndarray:
    """Per-cell normalisation of (cells, bins): "sum" (each cell sums to 1), "l2", or None (counts)."""
    if how is None or how == "none":
        return hists
    if how == "sum":
        s = hists.sum(axis=1, keepdims=True)
    elif how == "l2":
        s = np.linalg.norm(hists, axis=1, keepdims=True)
    else:
        raise EdgefaceError(f"normalise must be 'sum', 'l2' or None, got {how!r}")
    return hists / np.where(s > 0, s, 1.0)
