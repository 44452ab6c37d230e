"""Shared pieces of the convert/optimize tests: a small embedder with real signal and real faces.

The embedder is a small MobileNetV2 (alpha 0.35) with a fixed seed whose BatchNorm statistics are
estimated on real aligned faces, so its embeddings differ from face to face (checked by the
tests: mean pairwise cosine well below 1) instead of collapsing to one direction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import edgeface  # noqa: F401
from edgeface.utils.images import write_image
from edgeface.utils.paths import cache_dir

INPUT = 112
# Few blocks so a conversion takes seconds, not minutes; the GAP head keeps it flat and int8-friendly.
SMALL_KW = dict(input_size=INPUT, alpha=0.35, last_channels=128, embedding_dim=64, head="gap",
                stages=[(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 1, 2)])
N_FACES = 48


def small_embedder(faces: np.ndarray | None = None, seed: int = 0):
    import tf_keras as keras

    from edgeface.nets import get_model
    from edgeface.optimize.distill import recalibrate_batchnorm

    keras.utils.set_random_seed(seed)
    model = get_model("mobilenetv2", **SMALL_KW)
    if faces is not None:
        recalibrate_batchnorm(model, faces)
    return model


def cached_aligned_dir() -> Path | None:
    """The lead's aligned CelebA crops (./cache, git-ignored), when this checkout has them."""
    d = cache_dir() / "celeba" / "arcface112"
    if d.is_dir() and sum(1 for _ in zip(range(N_FACES), d.rglob("*.png"))) >= N_FACES:
        return d
    return None


def align_celeba(celeba_root: Path, out_dir: Path, n: int = N_FACES, first_identity: int = 0) -> Path:
    """Align n CelebA training images (the first image of each identity from `first_identity` on,
    sorted) with the real MTCNN."""
    from edgeface.align.detect import MTCNNDetector
    from edgeface.align.faces import pick_main_face
    from edgeface.align.transform import align_face, get_template
    from edgeface.utils.images import read_image

    det = MTCNNDetector(min_face_size=40, max_side=250)
    template = get_template("arcface112")
    idents = [d for d in sorted(celeba_root.iterdir()) if d.is_dir()][first_identity:]
    files = [p for ident in idents for p in sorted(ident.iterdir())[:1]]
    written = 0
    for f in files:
        rgb = read_image(f)
        face = pick_main_face(det.detect(rgb), rgb.shape)
        if face is None:
            continue
        write_image(out_dir / f.parent.name / (f.stem + ".png"), align_face(rgb, face.landmarks, template))
        written += 1
        if written >= n:
            break
    return out_dir


def synthetic_faces_dir(out_dir: Path, n: int = N_FACES) -> Path:
    """Noise images: only for the size checks when no real data is present."""
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(out_dir / f"s{i // 8}" / f"{i}.png", rng.integers(0, 256, (INPUT, INPUT, 3), dtype=np.uint8))
    return out_dir


def load_faces(folder: Path, n: int = N_FACES, seed: int = 1) -> np.ndarray:
    """n faces sampled with `seed` (the convert default calibration seed is 0: use another to evaluate)."""
    from edgeface.data.calibration import load_calibration

    x, _ = load_calibration(folder, (INPUT, INPUT, 3), n, seed=seed)
    return x


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)
