"""Five-point similarity alignment onto the ArcFace template (TF-free: numpy + OpenCV).

Landmark order everywhere: left eye, right eye, nose, left mouth corner, right mouth corner
(left/right as seen in the image).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.errors import EdgefaceError

# The standard ArcFace/insightface 112x112 template (the 96x112 one shifted by 8 px in x).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Template:
    name: str
    width: int
    height: int
    points: np.ndarray  # (5, 2) destination landmarks in output pixels


def _arcface_scaled(size: int, margin: float) -> np.ndarray:
    """The 112 template scaled to `size`, shrunk by `margin` (fraction of the side) around the centre."""
    centre = np.array([56.0, 56.0])
    return (ARCFACE_112 - centre) * (size / 112.0) * (1.0 - 2.0 * margin) + size / 2.0


TEMPLATES = {
    "arcface112": Template("arcface112", 112, 112, ARCFACE_112.copy()),
    "arcface96x112": Template("arcface96x112", 96, 112, ARCFACE_112 - np.array([8.0, 0.0])),
    # FaceNet-style 160x160 crop with context around the face (about 15% of the side each way).
    "arcface160": Template("arcface160", 160, 160, _arcface_scaled(160, 0.15)),
}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise EdgefaceError(f"unknown alignment template {name!r}; choose from {', '.join(TEMPLATES)}") from None


def template_for_size(width: int, height: int) -> Template:
    """The template matching an output size, scaling the 112 one for other squares (96, 128...)."""
    for t in TEMPLATES.values():
        if (t.width, t.height) == (width, height):
            return t
    if width != height:
        raise EdgefaceError(f"no alignment template for {width}x{height}")
    return Template(f"arcface{width}", width, height, ARCFACE_112 * (width / 112.0))


def registered_template_for(height: int, width: int) -> str | None:
    """The name of the registered template whose output is height x width, or None (the one
    size -> template lookup: trainer, convert and bench all ask here)."""
    return next((t.name for t in TEMPLATES.values() if (t.height, t.width) == (height, width)), None)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    Umeyama (1991): closed form via the SVD of the covariance. Returns a 2x3 matrix.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks (all points coincide)")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # keep a rotation, never a reflection
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:, :2].T + m[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, template: Template | str = "arcface112") -> np.ndarray:
    """Warp `image` so that `landmarks` (5x2, image pixels) land on the template. Returns HxWx3."""
    if isinstance(template, str):
        template = get_template(template)
    m = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template.points)
    return cv2.warpAffine(image, m, (template.width, template.height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def centre_crop(image: np.ndarray, template: Template | str = "arcface112", fraction: float = 0.55) -> np.ndarray:
    """Fallback when no face is found: a centred square of `fraction` of the shorter side, resized.

    0.55 of an LFW-framed (about 2.2x face box) image is roughly the face box plus a small margin,
    close to what the five-point template would give for a frontal, centred face.
    """
    if isinstance(template, str):
        template = get_template(template)
    h, w = image.shape[:2]
    side = max(1, int(round(min(h, w) * fraction)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = image[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (template.width, template.height), interpolation=cv2.INTER_AREA)


def clahe(image: np.ndarray, clip_limit: float = 2.0, grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation on the luminance channel (seed preprocessing)."""
    op = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(grid, grid))
    if image.ndim == 2:
        return op.apply(image)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = op.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
