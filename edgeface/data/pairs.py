"""LFW `pairs.txt` (View 2 protocol) reader and validator. TF-free.

Format: a header `FOLDS N` (a bare `N` means one fold), then per fold N same-person lines
`name n1 n2` followed by N different-person lines `name1 n1 name2 n2`. Image `n` of `name`
is `<name>/<name>_<n:04d>.jpg` in the raw LFW tree and `<name>/<name>_<n:04d>.png` in a folder
aligned by `edgeface align` (same relative path, PNG). Every problem is reported as one line
naming the file, the first bad line number and its text.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.utils.io import read_input_file

MANIFEST = "manifest.jsonl"  # marks a folder written by `edgeface align`
EXTENSIONS = {"raw": ".jpg", "aligned": ".png"}


def image_relpath(name: str, number: int, ext: str = ".jpg") -> str:
    return f"{name}/{name}_{number:04d}{ext}"


def is_aligned_root(root: str | os.PathLike) -> bool:
    return (Path(root) / MANIFEST).is_file()


@dataclass
class Pairs:
    """Parsed pairs: `folds[k]` is a list of (path_a, path_b, is_same)."""

    path: Path
    n_folds: int
    per_class: int
    folds: list[list[tuple[Path, Path, bool]]]
    image_root: Path | None = None
    layout: str | None = None  # "raw" | "aligned" | None (unresolved, relative paths)
    lines: list[int] = field(default_factory=list, repr=False)  # source line number of each pair (flat order)

    def __len__(self) -> int:
        return sum(len(f) for f in self.folds)

    @property
    def pairs(self) -> list[tuple[Path, Path, bool]]:
        return [p for fold in self.folds for p in fold]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s for _, _, s in self.pairs], dtype=bool)

    @property
    def fold_ids(self) -> np.ndarray:
        return np.concatenate([np.full(len(f), k, dtype=np.int32) for k, f in enumerate(self.folds)])

    def unique_images(self) -> list[Path]:
        """Every image named by the pairs, once each, in first-use order (what needs embedding)."""
        seen: dict[Path, None] = {}
        for a, b, _ in self.pairs:
            seen.setdefault(a)
            seen.setdefault(b)
        return list(seen)

    def index_pairs(self) -> tuple[list[Path], np.ndarray]:
        """(unique images, (n_pairs, 2) int indices into them)."""
        images = self.unique_images()
        pos = {p: i for i, p in enumerate(images)}
        idx = np.array([[pos[a], pos[b]] for a, b, _ in self.pairs], dtype=np.int64).reshape(-1, 2)
        return images, idx


def _fail(path: Path, lineno: int, text: str, reason: str) -> EdgefaceError:
    return EdgefaceError(f"{path} line {lineno}: {reason}: {text.strip()!r}")


def _int(tok: str, path: Path, lineno: int, text: str, what: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise _fail(path, lineno, text, f"{what} is not an integer ({tok!r})") from None
    if v < 1:
        raise _fail(path, lineno, text, f"{what} must be >= 1 (got {v})")
    return v


def _resolver(image_root: Path | None, resolve) -> tuple[Callable[[str, int], Path], str | None]:
    if callable(resolve):
        return resolve, "custom"
    if image_root is None:
        ext = EXTENSIONS["aligned" if resolve == "aligned" else "raw"]
        return (lambda name, n: Path(image_relpath(name, n, ext))), None
    if resolve == "auto":
        resolve = "aligned" if is_aligned_root(image_root) else "raw"
    if resolve not in EXTENSIONS:
        raise EdgefaceError(f"resolve must be 'auto', 'raw', 'aligned' or a function, got {resolve!r}")
    ext = EXTENSIONS[resolve]
    return (lambda name, n: image_root / image_relpath(name, n, ext)), resolve


def read_pairs(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
               resolve: str | Callable[[str, int], Path] = "auto", check_exists: bool = True) -> Pairs:
    """Parse and validate a pairs file.

    image_root: the raw LFW tree or an aligned folder; None keeps relative paths (no existence check).
    resolve: "auto" (aligned if image_root holds manifest.jsonl, else raw), "raw", "aligned", or a
    function (name, number) -> Path.
    """
    path = Path(path)
    try:
        raw_lines = read_input_file(path, "pairs file").decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise EdgefaceError(f"pairs file is not text (UTF-8): {path}") from None
    while raw_lines and not raw_lines[-1].strip():  # trailing blank lines are harmless
        raw_lines.pop()
    if not raw_lines:
        raise EdgefaceError(f"{path} is empty: expected a header line like '10 300'")

    header = raw_lines[0].split()
    if len(header) == 1:
        n_folds, per_class = 1, _int(header[0], path, 1, raw_lines[0], "pairs per class")
    elif len(header) == 2:
        n_folds = _int(header[0], path, 1, raw_lines[0], "number of folds")
        per_class = _int(header[1], path, 1, raw_lines[0], "pairs per class")
    else:
        raise _fail(path, 1, raw_lines[0], f"header must be 'FOLDS PAIRS_PER_CLASS', got {len(header)} fields")

    expected = n_folds * 2 * per_class
    body = raw_lines[1:]
    if len(body) < expected:
        lineno = len(raw_lines) + 1
        raise EdgefaceError(f"{path} line {lineno}: file ends early: header promises {n_folds} folds x "
                            f"{2 * per_class} pairs = {expected} pair lines, found {len(body)} "
                            f"(last line {len(raw_lines)}: {raw_lines[-1].strip()!r})")
    if len(body) > expected:
        lineno = expected + 2
        raise _fail(path, lineno, raw_lines[lineno - 1],
                    f"more lines than the header promises ({expected} pair lines)")

    image_root = Path(image_root) if image_root is not None else None
    if image_root is not None and not image_root.is_dir():
        raise EdgefaceError(f"image folder not found: {image_root}")
    to_path, layout = _resolver(image_root, resolve)
    check = check_exists and image_root is not None
    exists_cache: dict[Path, bool] = {}

    def image(name: str, n: int, lineno: int, text: str) -> Path:
        p = to_path(name, n)
        if check:
            ok = exists_cache.get(p)
            if ok is None:
                ok = exists_cache[p] = Path(p).is_file()
            if not ok:
                raise _fail(path, lineno, text, f"image not found: {p}")
        return Path(p)

    folds: list[list[tuple[Path, Path, bool]]] = []
    line_numbers: list[int] = []
    lineno = 1
    for k in range(n_folds):
        fold = []
        for same in (True, False):
            for _ in range(per_class):
                lineno += 1
                text = raw_lines[lineno - 1]
                tok = text.split()
                if same:
                    if len(tok) != 3:
                        kind = "a different-person line" if len(tok) == 4 else f"{len(tok)} fields"
                        raise _fail(path, lineno, text, f"fold {k + 1}: expected a same-person line "
                                    f"'name n1 n2', got {kind}")
                    name, n1, n2 = tok[0], _int(tok[1], path, lineno, text, "image number"), \
                        _int(tok[2], path, lineno, text, "image number")
                    if n1 == n2:
                        raise _fail(path, lineno, text, "a same-person pair names the same image twice")
                    a, b = image(name, n1, lineno, text), image(name, n2, lineno, text)
                else:
                    if len(tok) != 4:
                        kind = "a same-person line" if len(tok) == 3 else f"{len(tok)} fields"
                        raise _fail(path, lineno, text, f"fold {k + 1}: expected a different-person line "
                                    f"'name1 n1 name2 n2', got {kind}")
                    name1, name2 = tok[0], tok[2]
                    n1 = _int(tok[1], path, lineno, text, "image number")
                    n2 = _int(tok[3], path, lineno, text, "image number")
                    if name1 == name2:
                        raise _fail(path, lineno, text, "a different-person pair names the same person twice")
                    a, b = image(name1, n1, lineno, text), image(name2, n2, lineno, text)
                fold.append((a, b, same))
                line_numbers.append(lineno)
        folds.append(fold)
    return Pairs(path=path, n_folds=n_folds, per_class=per_class, folds=folds, image_root=image_root,
                 layout=layout, lines=line_numbers)
