"""The tf.data input pipeline for training and evaluation, plus a TF-free `load_images`.

Augmentation follows the seed paper's recipe for small face sets: scale jitter (a random crop),
horizontal flip, small rotation (+-10 deg) and translation, optional brightness/contrast. The
geometric part is ONE bilinear warp per image (no repeated resampling). Pixels are then
standardised exactly like `edgeface.runtime.interpreter.normalize_pixels`: (x - 127.5) / 127.5.

Determinism: shuffling and every random draw derive from `seed` (stateless ops keyed by a seeded
per-element random stream), so two pipelines built with the same seed yield identical batches,
epoch after epoch; successive epochs differ from each other.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

import edgeface  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD


@dataclass(frozen=True)
class Augment:
    flip: bool = True           # horizontal mirror with p=0.5
    rotate_deg: float = 10.0    # uniform in [-rotate_deg, rotate_deg]
    scale: float = 0.1          # zoom factor uniform in [1 - scale, 1 + scale] (>1 = random crop)
    shift: float = 0.05         # translation, fraction of the side, each axis
    brightness: float = 0.0     # additive, fraction of full range (0.1 = +-25 grey levels); 0 = off
    contrast: float = 0.0       # multiplicative factor in [1 - contrast, 1 + contrast]; 0 = off
    fill: str = "reflect"       # how the warp fills outside the source: reflect | constant | nearest

    @classmethod
    def from_any(cls, value) -> "Augment | None":
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(asdict(cls()))
            if unknown:
                raise EdgefaceError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
            return cls(**value)
        raise EdgefaceError(f"augment must be a bool, a dict or an Augment, got {type(value).__name__}")


def make_dataset(paths: Sequence[str], labels=None, image_size: int | tuple[int, int] = 112,
                 batch_size: int = 64, training: bool = False, augment=None, seed: int = 0,
                 extra: Mapping[str, np.ndarray] | None = None, flip_flag: bool = False, channels: int = 3,
                 shuffle: bool | None = None, drop_remainder: bool | None = None):
    """A batched tf.data.Dataset over image files (PNG/JPEG/BMP/GIF, colour or grayscale), resized to
    `image_size` (an int or (height, width)) when they differ.

    Elements are `(images, labels)` with images float32 (B, H, W, channels) in [-1, 1] and labels
    int64 (B,) (-1 when `labels` is None). When `extra` or `flip_flag` is given, elements are a dict
    instead: {"image", "label", **extra, "flip_flag"}; `extra` arrays (first dim = len(paths)) follow
    their image through the shuffle, and `flip_flag` (bool) says whether the image was mirrored,
    e.g. to pick a mirrored teacher embedding. `augment`: None/False, True (defaults), dict or Augment;
    it defaults to on when training. Shuffling defaults to `training`; training drops the last partial batch.
    """
    import tensorflow as tf

    n = len(paths)
    if n == 0:
        raise EdgefaceError("make_dataset: no image paths")
    if channels not in (1, 3):
        raise EdgefaceError(f"channels must be 1 or 3, got {channels}")
    if batch_size < 1:
        raise EdgefaceError(f"batch_size must be >= 1, got {batch_size}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise EdgefaceError(f"labels shape {labels.shape} does not match {n} paths")
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
    for k, v in extra.items():
        if k in ("image", "label", "flip_flag"):
            raise EdgefaceError(f"extra key {k!r} is reserved")
        if v.shape[:1] != (n,):
            raise EdgefaceError(f"extra[{k!r}] has {v.shape[:1]} rows, expected {n}")
    aug = Augment.from_any(True if (augment is None and training) else augment)
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    as_dict = bool(extra) or flip_flag

    ds = tf.data.Dataset.from_tensor_slices((np.asarray([str(p) for p in paths]), labels, extra))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    # One seeded int64 per element (new values every epoch) keys all of that element's random ops.
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rand))

    def load(item, r):
        path, label, ext = item
        img = decode(tf.io.read_file(path), channels)
        img = tf.image.resize(img, (h, w), method="bilinear", antialias=True)  # identity at the right size
        flipped = tf.constant(False)
        if aug is not None:
            key = tf.stack([tf.cast(seed, tf.int64), r])
            img, flipped = augment_image(img, key, aug)
        img = (tf.clip_by_value(img, 0.0, 255.0) - PIXEL_MEAN) / PIXEL_STD
        img = tf.ensure_shape(img, (h, w, channels))
        if not as_dict:
            return img, label
        out = {"image": img, "label": label, **ext}
        if flip_flag:
            out["flip_flag"] = flipped
        return out

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder and n >= batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def decode(data, channels: int = 3):
    """Encoded bytes -> float32 (H, W, channels) in [0, 255]; gray, alpha and 16-bit handled."""
    import tensorflow as tf

    # JPEGs with the accurate IDCT: the same pixels as OpenCV (read_image), so training sees what
    # evaluation and the on-device runtime see (TF's default fast IDCT differs by a few grey levels).
    img = tf.cond(tf.io.is_jpeg(data),
                  lambda: tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE"),
                  lambda: tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False))
    return tf.cast(img, tf.float32)


def augment_image(img, key, aug: Augment):
    """Random flip + one affine warp (rotation, zoom, shift) + brightness/contrast. Returns (img, flipped)."""
    import tensorflow as tf

    def u(k, lo, hi):
        return tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(key, k), lo, hi)

    flipped = tf.constant(False)
    if aug.flip:
        flipped = u(0, 0.0, 1.0) < 0.5
        img = tf.cond(flipped, lambda: tf.image.flip_left_right(img), lambda: img)
    shape = tf.cast(tf.shape(img), tf.float32)
    hh, ww = shape[0], shape[1]
    theta = u(1, -1.0, 1.0) * (aug.rotate_deg * math.pi / 180.0)
    zoom = 1.0 + u(2, -aug.scale, aug.scale) if aug.scale > 0 else tf.constant(1.0)
    tx = u(3, -aug.shift, aug.shift) * ww
    ty = u(4, -aug.shift, aug.shift) * hh
    if aug.rotate_deg > 0 or aug.scale > 0 or aug.shift > 0:
        # Output pixel -> input pixel: in = R(theta)/zoom (out - c) + c - t  (c = centre, t = shift).
        cos, sin = tf.cos(theta) / zoom, tf.sin(theta) / zoom
        cx, cy = (ww - 1.0) / 2.0, (hh - 1.0) / 2.0
        m = tf.stack([cos, -sin, cx - cos * cx + sin * cy - tx,
                      sin, cos, cy - sin * cx - cos * cy - ty, 0.0, 0.0])
        img = tf.raw_ops.ImageProjectiveTransformV3(
            images=img[None], transforms=m[None], output_shape=tf.shape(img)[:2], fill_value=0.0,
            interpolation="BILINEAR", fill_mode=aug.fill.upper())[0]
    if aug.brightness > 0:
        img = img + u(5, -aug.brightness, aug.brightness) * 255.0
    if aug.contrast > 0:
        mean = tf.reduce_mean(img, axis=[0, 1], keepdims=True)
        img = (img - mean) * u(6, 1.0 - aug.contrast, 1.0 + aug.contrast) + mean
    return img, flipped


def load_images(paths: Sequence[str], size: int | tuple[int, int] = 112, channels: int = 3,
                desc: str = "load images") -> np.ndarray:
    """Read images (TF-free) into a uint8 array (N, H, W, channels); `size` is an int or (height, width).

    For calibration and evaluation sets; unreadable files raise one-line BadImage errors.
    """
    import cv2

    from edgeface.utils.images import read_image
    from edgeface.utils.progress import progress

    if channels not in (1, 3):
        raise EdgefaceError(f"channels must be 1 or 3, got {channels}")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    out = np.empty((len(paths), h, w, channels), dtype=np.uint8)
    for i, p in enumerate(progress(paths, total=len(paths), desc=desc, disable=None if len(paths) > 200 else True)):
        img = read_image(p)
        if img.shape[:2] != (h, w):
            shrink = img.shape[0] > h or img.shape[1] > w
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[i] = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None] if channels == 1 else img
    return out
