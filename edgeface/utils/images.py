"""Read any image a user may hand us into RGB uint8, or fail with one clear line.

TF-free (numpy + OpenCV) so the on-device runtime uses the same reader as training.
Handles grayscale, alpha, 16-bit and palette images; applies a JPEG's EXIF orientation (phones
store pixels as the sensor saw them and an orientation tag); rejects empty, truncated, corrupt
(libjpeg's "Corrupt JPEG data" warning, unless allow_corrupt) and non-image files, and refuses
images whose header declares more than max_pixels before decoding them.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.utils.native import captured_native_stderr

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
DEFAULT_MAX_PIXELS = 50_000_000  # a 30000x30000 PNG of 0.9 MB would take 3.6 GB decoded
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: always these 12 bytes
JPEG_SOI = b"\xff\xd8\xff"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadImage(EdgefaceError):
    """The file is not a readable, complete image."""


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def max_pixels_default() -> int:
    """$EDGEFACE_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    env = os.environ.get("EDGEFACE_MAX_PIXELS")
    try:
        return int(env) if env else DEFAULT_MAX_PIXELS
    except ValueError:
        raise EdgefaceError(f"EDGEFACE_MAX_PIXELS must be an integer, got {env!r}") from None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            i += 2
            continue
        if marker in JPEG_SOF and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens = []
    for line in data[2:1024].split(b"\n"):
        tokens += line.split(b"#")[0].split()
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding, or None for formats not parsed here."""
    try:
        if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:3] == JPEG_SOI:
            return _jpeg_size(data)
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = data[12:16]
            if kind == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                b = int.from_bytes(data[21:25], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
        if data[:1] == b"P" and data[1:2] in b"123456":
            return _pnm_size(data)
    except (struct.error, ValueError):
        return None
    return None


def _check_complete(data: bytes, path) -> None:
    # libjpeg/libpng may decode truncated files into a half-grey image with only a warning: look
    # for the end markers ourselves. Anywhere, not only at the very end: cameras and apps append
    # trailers (thumbnails, depth maps) after a complete image, which every reader accepts.
    if data[:3] == JPEG_SOI:
        if b"\xff\xd9" not in data:
            raise BadImage(f"truncated JPEG (no end-of-image marker): {path}")
    elif data[:8] == PNG_SIGNATURE:
        if PNG_IEND not in data:
            raise BadImage(f"truncated PNG (no IEND chunk): {path}")


IMAGE_SIGNATURES = (PNG_SIGNATURE, JPEG_SOI, b"BM", b"RIFF", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4",
                    b"P5", b"P6")


def check_image_bytes(data: bytes, path, max_pixels: int | None = None) -> None:
    """The checks that need no decoding: not empty, a known image format, complete, not too large."""
    if not data:
        raise BadImage(f"empty file (0 bytes): {path}")
    if not data.startswith(IMAGE_SIGNATURES):
        raise BadImage(f"not a readable image: {path}")
    _check_complete(data, path)
    _check_pixels(header_size(data), path, max_pixels_default() if max_pixels is None else max_pixels)


def _check_pixels(size: tuple[int, int] | None, path, max_pixels: int) -> None:
    if size is not None and max_pixels and size[0] * size[1] > max_pixels:
        raise BadImage(f"image too large: {size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels > "
                       f"{max_pixels / 1e6:g} (EDGEFACE_MAX_PIXELS): {path}")


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


def decode_image(data: bytes, path="<bytes>", allow_corrupt: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file's bytes to RGB uint8 (H, W, 3). Raises BadImage with a one-line reason.

    allow_corrupt: use a JPEG that libjpeg reports as corrupt (it fills the damage with grey).
    max_pixels: refuse larger images before decoding [default: $EDGEFACE_MAX_PIXELS or 50 M; 0 = no limit].
    """
    if not data:
        raise BadImage(f"empty file (0 bytes): {path}")
    max_pixels = max_pixels_default() if max_pixels is None else max_pixels
    _check_pixels(header_size(data), path, max_pixels)
    _check_complete(data, path)
    buf = np.frombuffer(data, dtype=np.uint8)
    is_jpeg = data[:3] == JPEG_SOI
    # JPEGs are 8-bit without alpha: IMREAD_COLOR loses nothing and applies the EXIF orientation.
    flags = cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    with captured_native_stderr() as log:
        try:
            img = cv2.imdecode(buf, flags)
        except cv2.error as e:  # OpenCV's own limits (e.g. more pixels than CV_IO_MAX_IMAGE_PIXELS)
            raise BadImage(f"not a readable image: {path} ({str(e).strip().splitlines()[-1]})") from None
    warnings = "".join(log)
    if img is None:
        raise BadImage(f"not a readable image: {path}")
    if is_jpeg and ("Corrupt JPEG data" in warnings or "Premature end" in warnings) and not allow_corrupt:
        reason = warnings.strip().splitlines()[0]
        raise BadImage(f"corrupt JPEG ({reason}): {path} (--allow-corrupt uses it anyway)")
    _check_pixels((img.shape[1], img.shape[0]), path, max_pixels)  # formats whose header is not parsed
    return to_rgb_uint8(img, path)


def read_image(path: str | os.PathLike, allow_corrupt: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Read `path` as RGB uint8 (H, W, 3). Raises BadImage with a one-line reason."""
    from edgeface.utils.io import read_input_file

    return decode_image(read_input_file(path, "image", BadImage), path, allow_corrupt, max_pixels)


def encode_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> bytes:
    """RGB uint8 -> the bytes of an image file (PNG or JPEG by the extension of `path`)."""
    ext = Path(path).suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise EdgefaceError(f"could not encode image as {ext}: {path}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write RGB uint8 atomically (PNG or JPEG by extension)."""
    from edgeface.utils.io import write_bytes_atomic

    write_bytes_atomic(path, encode_image(path, rgb, quality))
