"""LFW look-alikes out of training data: every training face whose teacher embedding (face +
mirror, L2-normalised) has cosine >= threshold with ANY LFW face is dropped, because it may be an
LFW person and the bench would then measure memory, not generalisation. LFW only removes training
data here: nothing is chosen or tuned on it. (`edgeface data lfw-overlap`; the folder helpers and
dedupe are in `edgeface.data.hygiene`.)

The threshold is a one-to-13,233 search threshold, not the teacher's pair threshold: at the LFW
View 2 threshold (0.2713) every one of 5,261 CelebA faces has some LFW face above it (the best of
13,233 impostors is high: median 0.378). The default 0.5 was measured on CelebA against all of LFW
(benchmarks/data_sets.md): it drops 0.8% of the CelebA faces of people not in LFW and catches 83%
of the faces of the four CelebA identities found to be LFW people.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface.data.hygiene import detected_faces, set_names
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import l2_normalize
from edgeface.teachers.base import set_cache, teacher_embeddings

# Cosine of the ncnn MobileFaceNet teacher (flip TTA) to the nearest LFW face at which a training
# face is called an LFW person (measured on CelebA vs all of LFW, benchmarks/data_sets.md).
OVERLAP_THRESHOLD = 0.5


def flip_embeddings(teacher, paths: list[Path], cache_file: Path | None) -> np.ndarray:
    """Face + mirror teacher embeddings, summed and L2-normalised (as the bench's flip TTA)."""
    emb, emb_m = teacher_embeddings(teacher, paths, cache_file)
    return l2_normalize(emb + emb_m) if len(paths) else emb


def max_cosine(train: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(best cosine, index of the best reference) for each row of L2-normalised `train`."""
    best = np.full(len(train), -np.inf, np.float32)
    arg = np.zeros(len(train), np.int64)
    for s in range(0, len(train), chunk):
        sims = train[s:s + chunk] @ reference.T
        arg[s:s + chunk] = sims.argmax(axis=1)
        best[s:s + chunk] = sims[np.arange(len(sims)), arg[s:s + chunk]]
    return best, arg


def lfw_overlap(roots: list[Path], lfw_root: Path, teacher, threshold: float = OVERLAP_THRESHOLD,
                cache_dir: Path | None = None) -> tuple[dict[str, list[str]], list[dict], dict, int]:
    """(set -> kept relative paths, dropped [{set, path, lfw, cosine}], per-set counts, LFW faces compared)
    for aligned crops.

    In folders made by `edgeface align` only detected faces count (non-faces are left out and counted)."""
    names = set_names(roots)
    lfw_root = Path(lfw_root)
    # Detected faces only: an aligned folder also holds summary.png, a contact sheet, not a face.
    lfw_files = detected_faces(lfw_root)[0] if lfw_root.is_dir() else []
    if not lfw_files:
        raise EdgefaceError(f"no LFW face crops under {lfw_root} (give the folder `edgeface align` made of LFW)")
    per_set, not_faces = {}, {}
    for n, r in zip(names, roots):
        per_set[n], not_faces[n] = detected_faces(Path(r))
    for n, files in per_set.items():
        if not files:
            raise EdgefaceError(f"set {n!r} has no images")

    def cache(name):
        return set_cache(cache_dir, name) if cache_dir else None

    ref = flip_embeddings(teacher, [lfw_root / p for p in lfw_files], cache("lfw"))
    kept, dropped, counts = {}, [], {}
    for name, root in zip(names, roots):
        files = per_set[name]
        best, arg = max_cosine(flip_embeddings(teacher, [Path(root) / p for p in files], cache(name)), ref)
        hit = best >= threshold
        kept[name] = [p for p, h in zip(files, hit) if not h]
        dropped += [{"set": name, "path": p, "lfw": lfw_files[a], "cosine": round(float(b), 4)}
                    for p, h, a, b in zip(files, hit, arg, best) if h]
        counts[name] = {"not_faces": not_faces[name], "faces": len(files), "dropped": int(hit.sum()),
                        "kept": len(kept[name]),
                        "max_cosine_quantiles": {q: round(float(np.quantile(best, q)), 4)
                                                 for q in (0.5, 0.9, 0.99, 0.999)}}
    return kept, dropped, counts, len(lfw_files)
