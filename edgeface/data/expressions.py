"""Facial-expression datasets: deterministic splits, the seeds' preprocessing, augmentation (TF-free).

Layouts (class = folder name, sorted for the class index):
  ckplus48   <root>/<class>/*.png             stratified 80/10/10 split (seeded), or by subject (S010...)
  jaffe      <root>/<class>/*.png             split BY SUBJECT (first two letters of the file name)
  fer2013    <root>/{train,test}/<class>/*    its own train/test split; val carved (stratified) from train

Preprocessing (the seeds'; `edgeface.runtime.expression_preprocess`, shared with the runtime):
grayscale -> CLAHE -> resize to the model input -> replicate to 3 channels for ImageNet-style
backbones; the model sees (x - 127.5) / 127.5 (edgeface's one pixel convention).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.expression_preprocess import preprocess
from edgeface.utils.images import is_image_name, read_image
from edgeface.utils.progress import progress

KINDS = ("ckplus48", "jaffe", "fer2013", "folder")
SPLITS = ("train", "val", "test")
_CK_SUBJECT = re.compile(r"^(S\d+)_")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    subject: str  # identity, for subject-disjoint splits ("" when unknown)


@dataclass
class ExpressionData:
    kind: str
    root: Path
    class_names: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    split_spec: dict = field(default_factory=dict)  # everything needed to rebuild the split exactly

    def counts(self) -> dict:
        return {s: len(v) for s, v in self.splits.items()}


def subject_of(kind: str, name: str) -> str:
    if kind == "jaffe":
        return name[:2].upper()
    m = _CK_SUBJECT.match(name)
    return m.group(1) if m else ""


def detect_kind(root: Path) -> str:
    """Guess the layout: train/+test/ -> fer2013; JAFFE-style names -> jaffe; S###_ names -> ckplus48."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "fer2013"
    name = root.name.lower()
    if "jaffe" in name:
        return "jaffe"
    if "ck" in name:
        return "ckplus48"
    return "folder"


def _class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise EdgefaceError(f"expression data folder not found: {root}")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(names) < 2:
        raise EdgefaceError(f"{root} needs one sub-folder per class (found {len(names)})")
    return names


def _scan(root: Path, class_names: list[str], kind: str) -> list[Sample]:
    samples = []
    for label, c in enumerate(class_names):
        d = root / c
        if not d.is_dir():
            raise EdgefaceError(f"class folder missing: {d}")
        files = sorted(f for f in d.iterdir() if f.is_file() and is_image_name(f.name))
        if not files:
            raise EdgefaceError(f"class folder has no images: {d}")
        samples += [Sample(f, label, subject_of(kind, f.name)) for f in files]
    return samples


def _stratified(samples: list[Sample], fractions: dict[str, float], rng: np.random.Generator) -> dict[str, list[Sample]]:
    """Split each class by `fractions` (val, test; the rest is train), at least one of each when possible."""
    by_class = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    out = {k: [] for k in ("train", *fractions)}
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        start = 0
        for split, frac in fractions.items():
            n = max(1, int(round(frac * len(items)))) if len(items) >= 3 else 0
            out[split] += [items[i] for i in order[start:start + n]]
            start += n
        out["train"] += [items[i] for i in order[start:]]
    return out


def _by_subject(samples: list[Sample], n_val: int, n_test: int, rng: np.random.Generator) -> dict[str, list[Sample]]:
    subjects = sorted({s.subject for s in samples})
    if "" in subjects:
        raise EdgefaceError("some file names carry no subject code: cannot split by subject")
    if len(subjects) < n_val + n_test + 1:
        raise EdgefaceError(f"only {len(subjects)} subjects: need at least {n_val + n_test + 1} for a subject split")
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    test, val = set(order[:n_test]), set(order[n_test:n_test + n_val])
    return {"train": [s for s in samples if s.subject not in test | val],
            "val": [s for s in samples if s.subject in val],
            "test": [s for s in samples if s.subject in test]}


def load_dataset(data_dir: str | os.PathLike, kind: str = "auto", seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, split_by: str | None = None) -> ExpressionData:
    """Scan a dataset folder and split it deterministically (same args -> same split on any machine).

    split_by: "subject" (identity-disjoint) or "stratified"; None = the dataset's default
    (jaffe: subject, ckplus48/folder: stratified; fer2013 always uses its own train/test).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise EdgefaceError(f"expression data folder not found: {root}")
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in KINDS:
        raise EdgefaceError(f"unknown dataset kind {kind!r}; choose from {', '.join(KINDS)}")
    if not (0 < val_fraction < 0.5 and 0 <= test_fraction < 0.5):
        raise EdgefaceError(f"val/test fractions must be in (0, 0.5): {val_fraction}, {test_fraction}")
    rng = np.random.default_rng(seed)
    if kind == "fer2013":
        if not ((root / "train").is_dir() and (root / "test").is_dir()):
            raise EdgefaceError(f"{root} must hold train/ and test/ class folders (FER2013 layout)")
        class_names = _class_folders(root / "train")
        test_names = _class_folders(root / "test")
        if test_names != class_names:
            raise EdgefaceError(f"train and test classes differ in {root}: {class_names} vs {test_names}")
        split = _stratified(_scan(root / "train", class_names, kind), {"val": val_fraction}, rng)
        split["test"] = _scan(root / "test", class_names, kind)
        split_by = "official"
    else:
        class_names = _class_folders(root)
        samples = _scan(root, class_names, kind)
        split_by = split_by or ("subject" if kind == "jaffe" else "stratified")
        if split_by == "subject":
            n = len({s.subject for s in samples})
            n_test = max(1, int(round(n * test_fraction)))
            n_val = max(1, int(round(n * val_fraction)))
            split = _by_subject(samples, n_val, n_test, rng)
        elif split_by == "stratified":
            split = _stratified(samples, {"val": val_fraction, "test": test_fraction}, rng)
        else:
            raise EdgefaceError(f"split_by must be 'subject' or 'stratified', got {split_by!r}")
    for name in SPLITS:
        split.setdefault(name, [])
        split[name] = sorted(split[name], key=lambda s: (s.label, s.path.name))
    if not split["train"] or not split["val"]:
        raise EdgefaceError(f"{root}: too few images for a train/val split ({ {k: len(v) for k, v in split.items()} })")
    spec = {"kind": kind, "seed": int(seed), "val_fraction": val_fraction, "test_fraction": test_fraction,
            "split_by": split_by}
    return ExpressionData(kind, root, class_names, split, spec)


# ---- pixels ---------------------------------------------------------------------------------

def load_images(samples: list[Sample], size: int, channels: int = 3, use_clahe: bool = True,
                desc: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, size, size, channels), int labels (N,)) for a list of samples, with a progress bar."""
    x = np.zeros((len(samples), size, size, channels), np.uint8)
    y = np.zeros(len(samples), np.int64)
    for i, s in enumerate(progress(samples, total=len(samples), desc=desc)):
        x[i] = preprocess(read_image(s.path), size, channels, use_clahe)
        y[i] = s.label
    return x, y


def normalize(x_uint8: np.ndarray) -> np.ndarray:
    """The model input: (x - 127.5) / 127.5, the same for every edgeface model (see the card)."""
    from edgeface.spec import normalize_pixels
    return normalize_pixels(x_uint8)


def random_erase(x: np.ndarray, rng: np.random.Generator, p: float, area=(0.02, 0.2), aspect=(0.3, 3.3)) -> np.ndarray:
    """Random erasing (Zhong et al. 2017): with probability p an image gets one rectangle of uniform
    noise covering `area` of it, so no single face region (mouth, brows) can carry the class alone."""
    out = x.copy()
    n, h, w = x.shape[:3]
    for i in np.flatnonzero(rng.random(n) < p):
        a = rng.uniform(*area) * h * w
        r = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
        eh, ew = min(h, max(1, int(round(np.sqrt(a * r))))), min(w, max(1, int(round(np.sqrt(a / r)))))
        top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        out[i, top:top + eh, left:left + ew] = rng.integers(0, 256, (eh, ew) + x.shape[3:])
    return out


def mixup(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float):
    """mixup (Zhang et al. 2018) of float images: each image blended with a random partner by
    lam ~ Beta(alpha, alpha), folded to lam >= 0.5 so `y` stays the dominant label. (x, y, y_partner, lam)."""
    partner = rng.permutation(len(x))
    lam = rng.beta(alpha, alpha, len(x)).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return lam.reshape(shape) * x + (1.0 - lam.reshape(shape)) * x[partner], y, y[partner], lam


def augment(x: np.ndarray, rng: np.random.Generator, rotation: float = 10.0, translate: float = 0.1,
            flip: bool = True, scale: float = 0.05) -> np.ndarray:
    """Random rotation (degrees), translation (fraction of the side), zoom and horizontal flip, per image."""
    out = np.empty_like(x)
    n, h, w = x.shape[:3]
    for i in range(n):
        angle = rng.uniform(-rotation, rotation)
        s = rng.uniform(1 - scale, 1 + scale)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, s)
        m[:, 2] += rng.uniform(-translate, translate, 2) * (w, h)
        img = cv2.warpAffine(x[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if img.ndim == 2:
            img = img[:, :, None]
        if flip and rng.random() < 0.5:
            img = img[:, ::-1]
        out[i] = img
    return out
