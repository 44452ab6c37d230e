"""Augmented views of an aligned training set, for distillation on small data.

The training set is small (5k faces), so each face is re-aligned K times from its ORIGINAL photo
with a jittered similarity transform (rotation, scale, shift, landmark noise: the alignment noise
a detector makes at test time) and photometric damage (colour, blur, JPEG, low resolution,
grayscale). View 0 is the clean crop. The teacher is then run on every exact view once
(`teacher_embeddings`), so the student's targets match its inputs without an online teacher.

    edgeface data views ALIGNED_DIR SRC_ROOT DST --views 8
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from edgeface.align.transform import get_template, similarity_transform
from edgeface.errors import EdgefaceError
from edgeface.utils.images import read_image, write_image
from edgeface.utils.progress import progress


def jitter_matrix(landmarks: np.ndarray, dst_points: np.ndarray, rng: np.random.Generator,
                  rot_deg=10.0, scale=0.08, shift=4.0, point_noise=1.5) -> np.ndarray:
    """A similarity transform onto a randomly perturbed template, from noisy landmarks."""
    noisy = landmarks + rng.normal(0.0, point_noise, landmarks.shape) * np.linalg.norm(
        landmarks[1] - landmarks[0]) / 40.0  # noise relative to eye distance (about 40 px at 112)
    theta = np.deg2rad(rng.uniform(-rot_deg, rot_deg))
    s = rng.uniform(1.0 - scale, 1.0 + scale)
    c = dst_points.mean(0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = (dst_points - c) @ rot.T * s + c + rng.uniform(-shift, shift, 2)
    return similarity_transform(noisy, dst)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour, blur, JPEG, low-resolution and grayscale damage, each with its own probability."""
    x = img.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean() * rng.uniform(0.75, 1.25)  # contrast, brightness
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(0.6, 1.4)  # saturation
    x = np.clip(x, 0, 255).astype(np.uint8)
    h, w = x.shape[:2]
    if rng.random() < 0.15:
        x = np.repeat(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.4))
    if rng.random() < 0.15:
        side = int(rng.integers(40, 80))
        x = cv2.resize(cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25:
        ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 85))])
        x = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return x


def make_views(aligned_dir, src_root, dst, views: int = 8, template: str = "arcface112", seed: int = 0) -> dict:
    """Write DST/<id>/<stem>_vK.png (K = 0 clean, 1..views-1 augmented) and DST/manifest.jsonl."""
    aligned_dir, src_root, dst = Path(aligned_dir), Path(src_root), Path(dst)
    from edgeface.align.pipeline import read_manifest

    entries = {e["source"]: e for e in read_manifest(aligned_dir) if e.get("status") == "ok" and e.get("landmarks")}
    tpl = get_template(template)
    out_lines = []
    dst.mkdir(parents=True, exist_ok=True)
    for source, e in progress(sorted(entries.items()), total=len(entries), desc="views"):
        stem = Path(source).with_suffix("")
        outs = [f"{stem}_v{k}.png" for k in range(views)]
        out_lines += [json.dumps({"source": source, "output": o, "status": "ok", "view": k}) for k, o in enumerate(outs)]
        if all((dst / o).exists() for o in outs):
            continue  # resumable: this source is done
        # One generator per source (seeded by its name) so a resumed run makes the same views.
        rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "little")])
        img = read_image(src_root / source)
        lm = np.asarray(e["landmarks"], dtype=np.float64)
        for k, out_rel in enumerate(outs):
            if k == 0:
                m = similarity_transform(lm, tpl.points)
            else:
                m = jitter_matrix(lm, tpl.points, rng)
            crop = cv2.warpAffine(img, m, (tpl.width, tpl.height), flags=cv2.INTER_LINEAR, borderValue=0)
            if k > 0:
                crop = photometric(crop, rng)
            write_image(dst / out_rel, crop)
    from edgeface.utils.io import write_text_atomic

    write_text_atomic(dst / "manifest.jsonl", "\n".join(out_lines) + "\n")
    return {"sources": len(entries), "views": len(out_lines)}
