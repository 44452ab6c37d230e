"""Local phase quantisation (Ojansivu & Heikkila 2008), numpy only; and a plain LBP to compare with.

For every pixel p the short-term Fourier transform over the win x win neighbourhood N(p),

    F(u, p) = sum_{d in N} f(p + d) exp(-2j pi u . d),    d = (dx, dy) in [-r, r]^2, r = (win - 1) / 2

is taken at the four lowest non-zero frequencies u1 = [a, 0], u2 = [0, a], u3 = [a, a],
u4 = [a, -a], a = 1 / win (u = [horizontal, vertical]; x runs along columns, y down the rows).
The 8 values G = [Re F(u1), Im F(u1), Re F(u2), Im F(u2), ..., Im F(u4)] are decorrelated
(whitened under the model that neighbouring pixels correlate as rho ** distance, rho = 0.9:
D = M C M^T, D = U S V^T, G' = V^T G, as in the authors' lpq.m), and each is quantised by its
sign: code = sum_i [G'_i > 0] * 2 ** i, in 0..255. The descriptor is the 256-bin histogram of the
codes of each cell of a grid over the valid (H - win + 1) x (W - win + 1) code map, concatenated.

Why it is blur-insensitive: a centrally symmetric blur multiplies the spectrum by a real,
non-negative factor at low frequencies, which leaves the phase (and so the signs) unchanged.

Sign convention: SVD basis vectors are defined up to sign; each column of V is flipped so that
its largest-magnitude entry is positive, so codes are the same on every machine.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeface.errors import EdgefaceError
from edgeface.features._common import as_gray, cell_histograms, grid_of, normalise

N_CODES = 256


def _check_win(win) -> int:
    if int(win) != win or win < 3 or win % 2 == 0:
        raise EdgefaceError(f"LPQ window must be an odd int >= 3, got {win!r}")
    return int(win)


def frequencies(win: int) -> np.ndarray:
    """The four STFT frequencies (ux, uy): [a,0], [0,a], [a,a], [a,-a], a = 1/win."""
    a = 1.0 / win
    return np.array([[a, 0.0], [0.0, a], [a, a], [a, -a]])


def stft(img, win: int = 7) -> np.ndarray:
    """(H-win+1, W-win+1, 4) complex STFT at the four frequencies (valid positions only)."""
    win = _check_win(win)
    f = as_gray(img, min_size=win)
    r = (win - 1) // 2
    d = np.arange(-r, r + 1)
    out = []
    for ux, uy in frequencies(win):
        ex = np.exp(-2j * np.pi * ux * d)  # along columns (x)
        ey = np.exp(-2j * np.pi * uy * d)  # along rows (y)
        rows = sliding_window_view(f, win, axis=1) @ ex          # (H, W-win+1)
        out.append(sliding_window_view(rows, win, axis=0) @ ey)  # (H-win+1, W-win+1)
    return np.stack(out, axis=-1)


def decorrelation(win: int = 7, rho: float = 0.9) -> np.ndarray:
    """The 8x8 whitening transform V^T for the rho ** distance pixel-correlation model."""
    win = _check_win(win)
    if not 0.0 < rho < 1.0:
        raise EdgefaceError(f"rho must be in (0, 1), got {rho!r}")
    r = (win - 1) // 2
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")  # window pixel (k, l) -> (dy, dx), row-major like the STFT
    pos = np.stack([dx.ravel(), dy.ravel()], axis=1).astype(np.float64)
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    c = rho ** dist
    rows = []
    for ux, uy in frequencies(win):
        q = np.exp(-2j * np.pi * (ux * pos[:, 0] + uy * pos[:, 1]))
        rows += [q.real, q.imag]
    m = np.array(rows)                                       # (8, win*win)
    dmat = m @ c @ m.T
    a = np.diag([1.000007, 1.000006, 1.000005, 1.000004, 1.000003, 1.000002, 1.000001, 1.0])  # as lpq.m
    _, _, vt = np.linalg.svd(a @ dmat @ a)
    v = vt.T
    big = np.argmax(np.abs(v), axis=0)
    v = v * np.sign(v[big, np.arange(8)])
    return v.T


def lpq_codes(img, win: int = 7, decorrelate: bool = True, rho: float = 0.9) -> np.ndarray:
    """(H-win+1, W-win+1) uint8 LPQ code map."""
    f = stft(img, win)
    g = np.stack([f[..., 0].real, f[..., 0].imag, f[..., 1].real, f[..., 1].imag,
                  f[..., 2].real, f[..., 2].imag, f[..., 3].real, f[..., 3].imag], axis=-1)
    if decorrelate:
        g = g @ decorrelation(win, rho).T
    bits = (g > 0).astype(np.uint16)
    return (bits * (1 << np.arange(8, dtype=np.uint16))).sum(-1).astype(np.uint8)


def lpq(img, win: int = 7, grid=(1, 1), decorrelate: bool = True, rho: float = 0.9,
        normalise_by: str | None = "sum") -> np.ndarray:
    """LPQ descriptor: 256-bin code histogram per grid cell, concatenated ((rows*cols*256,) float64).

    normalise_by: "sum" (each cell's histogram sums to 1, the usual choice), "l2", or None (counts)."""
    codes = lpq_codes(img, win, decorrelate, rho)
    return normalise(cell_histograms(codes, N_CODES, grid_of(grid)), normalise_by).ravel()


# ---- plain LBP (3x3, 8 neighbours): the baseline the blur test compares LPQ with ----
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]  # (dy, dx), clockwise


def lbp_codes(img) -> np.ndarray:
    """(H-2, W-2) uint8 codes: bit k = [neighbour k >= centre], neighbours clockwise from top-left."""
    f = as_gray(img, min_size=3)
    h, w = f.shape
    c = f[1:h - 1, 1:w - 1]
    code = np.zeros(c.shape, np.uint16)
    for k, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (f[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= c).astype(np.uint16) << k
    return code.astype(np.uint8)


def lbp(img, grid=(1, 1), normalise_by: str | None = "sum") -> np.ndarray:
    """Plain LBP descriptor: 256-bin histogram per grid cell, concatenated."""
    return normalise(cell_histograms(lbp_codes(img), N_CODES, grid_of(grid)), normalise_by).ravel()
