"""Batch embedding of aligned face crops with a .tflite embedder (TF-free).

Flip test-time augmentation: the embedding of a face plus the embedding of its mirror image,
summed, then L2-normalised on the host (the model's raw output is never normalised in-graph).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.embedder import flip_tta
from edgeface.runtime.interpreter import TFLiteModel, l2_normalize
from edgeface.spec import InputSpec
from edgeface.utils.images import read_image
from edgeface.utils.progress import progress


def model_input_spec(model: TFLiteModel) -> dict:
    """(height, width, channels, mean, std) the model wants, from its input tensor and card."""
    _, h, w, c = model.input_shape
    inp = model.model_card.input if model.model_card else InputSpec()
    mean = np.asarray(inp.mean, dtype=np.float32)
    std = np.asarray(inp.std, dtype=np.float32)
    return {"height": h, "width": w, "channels": c, "mean": mean, "std": std, "gray": c == 1 or inp.color == "GRAY"}


def load_faces(paths: list[Path], height: int, width: int, gray: bool = False, desc: str = "load") -> tuple[np.ndarray, int]:
    """Read crops into one uint8 (N, H, W, C) array; returns (array, number resized to fit)."""
    c = 1 if gray else 3
    out = np.empty((len(paths), height, width, c), dtype=np.uint8)
    resized = 0
    for i, p in enumerate(progress(paths, total=len(paths), desc=desc, unit="img")):
        rgb = read_image(p)
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
            resized += 1
        out[i] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None] if gray else rgb
    return out, resized


def embed_faces(model: TFLiteModel, faces: np.ndarray, flip: bool = True, batch: int = 64,
                desc: str | None = None) -> np.ndarray:
    """(N, H, W, C) uint8 crops -> (N, D) L2-normalised float32 embeddings."""
    spec = model_input_spec(model)
    if faces.shape[1:] != (spec["height"], spec["width"], spec["channels"]):
        raise EdgefaceError(f"{model.path.name} expects {spec['height']}x{spec['width']}x{spec['channels']} "
                            f"crops, got {'x'.join(map(str, faces.shape[1:]))}")
    out = None
    bar = progress(total=len(faces), desc=desc or f"embed {model.path.name}", unit="img")
    try:
        for start in range(0, len(faces), batch):
            x = (faces[start:start + batch].astype(np.float32) - spec["mean"]) / spec["std"]
            e = flip_tta(model, x, flip)
            if out is None:
                out = np.empty((len(faces), e.shape[1]), dtype=np.float32)
            out[start:start + len(x)] = e
            bar.update(len(x))
    finally:
        bar.close()
    if out is None:
        raise EdgefaceError("no faces to embed")
    if not np.all(np.isfinite(out)):
        raise EdgefaceError(f"{model.path.name} produced non-finite embeddings")
    return l2_normalize(out)


def embed_paths(model_path: str | os.PathLike, paths: list[Path], flip: bool = True, threads: int = 2,
                batch: int = 64) -> np.ndarray:
    """Convenience: load a model and embed image files."""
    model = TFLiteModel(model_path, num_threads=threads)
    spec = model_input_spec(model)
    faces, _ = load_faces(paths, spec["height"], spec["width"], spec["gray"])
    return embed_faces(model, faces, flip=flip, batch=batch)
