"""`<identity-or-class>/<image>` folders: scan them, and split them without leakage.

TF-free. Labels are indices into the sorted class names, so the same folder always gives the same labels.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.utils.images import is_image_name


@dataclass
class ImageFolder:
    root: Path
    paths: list[str]          # absolute image paths, sorted by class then file name
    labels: np.ndarray        # int64 indices into class_names
    class_names: list[str]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def counts(self) -> dict[str, int]:
        """Images per class, in class-index order."""
        n = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(n[i]) for i, name in enumerate(self.class_names)}

    def subset(self, indices: Sequence[int]) -> "ImageFolder":
        """The same class list (labels unchanged) restricted to `indices`."""
        idx = np.asarray(sorted(indices), dtype=np.int64)
        return ImageFolder(self.root, [self.paths[i] for i in idx], self.labels[idx], list(self.class_names),
                           dict(self.meta))


def scan_folder(root: str | os.PathLike, min_images: int = 1, exclude=()) -> ImageFolder:
    """Read `root/<class>/<image>` (images found recursively inside each class folder).

    Hidden files/folders and non-image files are ignored; classes with fewer than `min_images`
    images, and the classes named in `exclude`, are dropped. Raises a one-line EdgefaceError for a missing root or one without images.
    """
    root = Path(root)
    if not root.is_dir():
        raise EdgefaceError(f"image folder not found: {root}")
    per_class: dict[str, list[str]] = {}
    skip = {str(e) for e in exclude}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                            and p.name not in skip):
        files = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if not f.startswith(".") and is_image_name(f)]
        if len(files) >= min_images:
            per_class[class_dir.name] = files
    if not per_class:
        raise EdgefaceError(f"no images found in {root} (expected {root}/<class>/<image>)")
    class_names = sorted(per_class)
    paths, labels = [], []
    for i, name in enumerate(class_names):
        paths += per_class[name]
        labels += [i] * len(per_class[name])
    return ImageFolder(root, paths, np.asarray(labels, dtype=np.int64), class_names)


def _check_fraction(f: float, what: str) -> None:
    if not 0.0 <= f < 1.0:
        raise EdgefaceError(f"{what} must be in [0, 1), got {f}")


def split_by_identity(folder: ImageFolder, val_fraction: float = 0.1, seed: int = 0,
                      group_fn: Callable[[str], str] | None = None) -> tuple[ImageFolder, ImageFolder]:
    """Train/val with disjoint groups (by default a group is a class = an identity).

    `group_fn(path) -> group` splits by something else, e.g. the JAFFE subject code. About
    `val_fraction` of the groups (at least one when val_fraction > 0) go to validation.
    """
    _check_fraction(val_fraction, "val_fraction")
    groups = [group_fn(p) for p in folder.paths] if group_fn else [folder.class_names[l] for l in folder.labels]
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    n_val = int(round(len(names) * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_val >= len(names):
        raise EdgefaceError(f"cannot hold out {n_val} of {len(names)} groups: need at least one for training")
    val_groups = {names[i] for i in order[:n_val]}
    val_idx = [i for i, g in enumerate(groups) if g in val_groups]
    train_idx = [i for i, g in enumerate(groups) if g not in val_groups]
    return folder.subset(train_idx), folder.subset(val_idx)


def split_stratified(folder: ImageFolder, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                     group_fn: Callable[[str], str] | None = None) -> tuple[ImageFolder, ...]:
    """Split into len(fractions) parts with each class's proportions kept (expression datasets).

    Without `group_fn` images are shuffled within each class. With it, whole groups (e.g. JAFFE
    subjects) are assigned to parts, so no group appears in two parts; then the per-class balance
    is only as good as the groups allow.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise EdgefaceError(f"fractions must be >= 2 non-negative numbers summing to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    if group_fn is None:
        by_class = defaultdict(list)
        for i, l in enumerate(folder.labels):
            by_class[int(l)].append(i)
        for cls in sorted(by_class):
            idx = np.asarray(by_class[cls])[rng.permutation(len(by_class[cls]))]
            for k, chunk in enumerate(np.split(idx, _cuts(len(idx), fractions))):
                parts[k] += chunk.tolist()
    else:
        groups = [group_fn(p) for p in folder.paths]
        names = sorted(set(groups))
        if len(names) < len(fractions):
            raise EdgefaceError(f"only {len(names)} groups for {len(fractions)} parts")
        shuffled = [names[i] for i in rng.permutation(len(names))]
        chunks = np.split(np.arange(len(names)), _cuts(len(names), fractions, at_least_one=True))
        part_of = {shuffled[j]: k for k, chunk in enumerate(chunks) for j in chunk}
        for i, g in enumerate(groups):
            parts[part_of[g]].append(i)
    return tuple(folder.subset(p) for p in parts)


def _cuts(n: int, fractions: np.ndarray, at_least_one: bool = False) -> list[int]:
    """Cut points for np.split so that part k gets about fractions[k] * n items."""
    sizes = np.floor(fractions * n).astype(int)
    # Hand the rounding leftovers to the parts that lost the most.
    for k in np.argsort(-(fractions * n - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[k] += 1
    if at_least_one:
        for k in range(len(sizes)):
            if sizes[k] == 0 and fractions[k] > 0:
                sizes[k] += 1
                sizes[int(np.argmax(sizes))] -= 1
    return np.cumsum(sizes)[:-1].tolist()


def jaffe_subject(path: str) -> str:
    """JAFFE's subject code: the first two letters of the file name (KA.AN1.39.png -> KA)."""
    return Path(path).name.split(".")[0][:2]
