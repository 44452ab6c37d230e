"""Calibration images for int8: aligned *training* faces, sampled with a fixed seed, never LFW;
for an expression run, its own TRAIN split (`load_split_calibration`).

Images are read with the shared reader, resized to the model input, converted to the model's
channels (RGB or GRAY) and normalised exactly as at training time, so the int8 ranges the
converter measures are the ones the model sees in use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeface.align.transform import clahe as clahe_op
from edgeface.data import expressions as xdata
from edgeface.data.pairs import is_aligned_root
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, normalize_pixels
from edgeface.utils.images import BadImage, is_image_name, read_image
from edgeface.utils.progress import progress

DEFAULT_COUNT = 300
DEFAULT_SEED = 0
# Aligned crops are resized, never re-framed: an aspect ratio this far off means the wrong crops.
MAX_ASPECT_MISMATCH = 0.10


def refuse_lfw(path: str | os.PathLike) -> None:
    """LFW is evaluation-only: calibrating on it would leak the test set into the int8 ranges."""
    if "lfw" in str(Path(path).resolve()).lower() or "lfw" in str(path).lower():
        raise EdgefaceError(f"refusing to calibrate on LFW ({path}): LFW is evaluation-only; "
                            "use aligned training faces (--calib DIR)")


def list_images(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.exists():
        raise EdgefaceError(f"calibration data not found: {root}")
    if not root.is_dir():
        raise EdgefaceError(f"calibration data must be a folder of images or a .npy array: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p))
    if is_aligned_root(root):  # crops sit in <person>/ folders; summary.png beside them is the contact sheet
        files = [p for p in files if p.parent != root]
    if not files:
        raise EdgefaceError(f"no calibration images in {root}")
    return files


def sample_files(files: Sequence[Path], count: int, seed: int = DEFAULT_SEED) -> list[Path]:
    """A fixed-seed sample so the same run always converts to the same int8 model."""
    if count <= 0:
        raise EdgefaceError(f"calibration count must be > 0, got {count}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order[:count]]


def prepare(rgb: np.ndarray, input_shape: Sequence[int], mean: float = PIXEL_MEAN, std: float = PIXEL_STD,
            grayscale: bool = False, clahe: dict | None = None) -> np.ndarray:
    """RGB uint8 -> float (H, W, C) the model eats: resized, RGB or GRAY, normalised.

    grayscale/clahe follow the run's preprocessing (expression models see gray, CLAHE'd faces,
    replicated to 3 channels when the backbone wants RGB).
    """
    h, w, c = (int(v) for v in input_shape)
    if c not in (1, 3):
        raise EdgefaceError(f"model input has {c} channels; expected 1 (GRAY) or 3 (RGB)")
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if (grayscale or c == 1) else rgb
    if clahe:  # on the native resolution, before resizing, as at training time
        img = clahe_op(img, float(clahe.get("clip_limit", 2.0)), int(clahe.get("grid", 8)))
    if img.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
        img = cv2.resize(img, (w, h), interpolation=interp)
    if img.ndim == 2:
        img = img[..., None] if c == 1 else np.repeat(img[..., None], 3, axis=-1)
    return normalize_pixels(img, mean, std)


def _check_aspect(shape, input_shape, path) -> None:
    h, w = shape[:2]
    mh, mw = input_shape[:2]
    if abs((w / h) / (mw / mh) - 1.0) > MAX_ASPECT_MISMATCH:
        raise EdgefaceError(f"calibration image {path} is {w}x{h} but the model input is {mw}x{mh}: "
                            "wrong input shape of calibration data (use crops aligned for this model)")


def load_npy(path: Path, input_shape: Sequence[int]) -> np.ndarray:
    """A .npy of already normalised inputs (N, H, W, C); the shape must match the model exactly."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EdgefaceError(f"cannot read calibration array {path}: {e}") from None
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(input_shape):
        raise EdgefaceError(f"calibration array {path.name} has shape {list(arr.shape)}; "
                            f"the model expects (N, {', '.join(map(str, input_shape))})")
    if len(arr) == 0:
        raise EdgefaceError(f"calibration array {path} is empty")
    return arr.astype(np.float32)


def load_calibration(source: str | os.PathLike, input_shape: Sequence[int], count: int = DEFAULT_COUNT,
                     seed: int = DEFAULT_SEED, mean: float = PIXEL_MEAN, std: float = PIXEL_STD,
                     grayscale: bool = False, clahe: dict | None = None) -> tuple[np.ndarray, dict]:
    """(float inputs (N, H, W, C), {"dir", "count", "seed", "skipped"}) from a folder or a .npy file."""
    source = Path(source)
    refuse_lfw(source)
    if source.suffix.lower() == ".npy" and source.is_file():
        arr = load_npy(source, input_shape)[:count]
        return arr, {"dir": str(source.resolve()), "count": len(arr), "seed": None, "skipped": 0}
    files = sample_files(list_images(source), count, seed)
    batch, skipped = [], 0
    for f in progress(files, total=len(files), desc="calibration", unit="img"):
        try:
            rgb = read_image(f)
        except BadImage:
            skipped += 1  # one corrupt training image should not stop a convert
            continue
        _check_aspect(rgb.shape, input_shape, f)
        batch.append(prepare(rgb, input_shape, mean, std, grayscale, clahe))
    if not batch:
        raise EdgefaceError(f"none of the {len(files)} calibration images in {source} could be read")
    return np.stack(batch), {"dir": str(source.resolve()), "count": len(batch), "seed": seed, "skipped": skipped}


def load_split_calibration(info: dict, input_shape, count: int = DEFAULT_COUNT,
                           seed: int = DEFAULT_SEED) -> tuple[np.ndarray, dict]:
    """Normalised inputs from an expression run's TRAIN split only (never val/test), preprocessed as
    in training. info: the run's run.json."""
    spec = info["data"]["split"]
    data = xdata.load_dataset(info["data"]["dir"], spec["kind"], spec["seed"], spec["val_fraction"],
                              spec["test_fraction"], spec["split_by"] if spec["split_by"] in ("subject", "stratified") else None)
    train = data.splits["train"]
    pick = [train[i] for i in sorted(np.random.default_rng(seed).permutation(len(train))[:count])]
    h, _, c = (int(v) for v in input_shape)
    x, _ = xdata.load_images(pick, h, c, bool(info["preprocessing"].get("clahe")), "calibration")
    return xdata.normalize(x), {"dir": info["data"]["dir"], "split": "train", "count": len(pick), "seed": seed}
