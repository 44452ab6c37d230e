"""Read any image a user may hand us into RGB uint8, or fail with one clear line.

TF-free (numpy + OpenCV) so the on-device runtime uses the same reader as training.
Handles grayscale, alpha, 16-bit and palette images; rejects empty, truncated and non-image files.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


class BadImage(EdgefaceError):
    """The file is not a readable, complete image."""


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _check_complete(data: bytes, path) -> None:
    # libjpeg/libpng decode truncated files into a half-grey image with only a warning:
    # check the end markers ourselves so a truncated file is reported, not silently used.
    if data[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in data[-64:]:
            raise BadImage(f"truncated JPEG (no end-of-image marker): {path}")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-32:]:
            raise BadImage(f"truncated PNG (no IEND chunk): {path}")


def to_rgb_uint8(img: np.ndarray, path="<array>", bgr: bool = True) -> np.ndarray:
    """Normalise a decoded array (gray / BGR / BGRA, 8 or 16 bit, float) to RGB uint8 HxWx3."""
    if img is None or img.size == 0:
        raise BadImage(f"empty image: {path}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img) * scale, 0, 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BadImage(f"unsupported pixel type {img.dtype}: {path}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if bgr else img
    else:
        raise BadImage(f"unsupported image shape {img.shape}: {path}")
    return np.ascontiguousarray(img)


def decode_image(data: bytes, path="<bytes>") -> np.ndarray:
    if not data:
        raise BadImage(f"empty file (0 bytes): {path}")
    _check_complete(data, path)
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadImage(f"not a readable image: {path}")
    return to_rgb_uint8(img, path)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read `path` as RGB uint8 (H, W, 3). Raises BadImage with a one-line reason."""
    from edgeface.utils.io import read_input_file

    return decode_image(read_input_file(path, "image", BadImage), path)


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write RGB uint8 atomically (PNG or JPEG by extension)."""
    from edgeface.utils.io import write_bytes_atomic

    ext = Path(path).suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise EdgefaceError(f"could not encode image as {ext}: {path}")
    write_bytes_atomic(path, buf.tobytes())
