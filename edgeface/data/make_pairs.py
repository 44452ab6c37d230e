"""Write an LFW-format View 2 pairs file from an identity folder `<person>/<photo>`. TF-free.

Image numbers follow LFW: image `i` of a person is the i-th of that person's image files in sorted
name order, counting from 1. In a folder already named the LFW way (`<person>/<person>_0001.jpg`,
`_0002.jpg`, ... with no gaps) that is the file's own number and `edgeface bench --lfw DIR` reads
the folder as it is. Any other names: `--lfw-layout LINKS` writes `LINKS/<person>/<person>_NNNN.jpg`
symbolic links to the photos (the bench and `edgeface align` read the images by content, so a PNG
behind a `.jpg` link is fine), and the bench reads LINKS.

People are split between folds as in LFW View 2: each person belongs to exactly one fold, so a
threshold chosen on nine folds never saw the tenth fold's people. Per fold: N same-person pairs
(two different photos of one person, people drawn in turn so no one dominates) and N
different-person pairs (two people of the same fold), no pair twice.
"""
from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path

import numpy as np

from edgeface.data.pairs import image_relpath
from edgeface.errors import EdgefaceError
from edgeface.utils.images import is_image_name
from edgeface.utils.io import write_text_atomic

MAX_PER_FOLD = 300  # LFW's own size; more pairs per fold add little to the estimate


def scan_people(root: str | os.PathLike) -> dict[str, list[Path]]:
    """person -> image files in sorted name order (hidden and non-image files ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise EdgefaceError(f"identity folder not found: {root}")
    people = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(c.isspace() for c in d.name):
            raise EdgefaceError(f"person folder {d.name!r} has white space in its name, which a pairs file "
                                "cannot hold: rename it (e.g. spaces to _)")
        files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".") and is_image_name(f))
        if files:
            people[d.name] = files
    if len(people) < 2:
        raise EdgefaceError(f"{root} has {len(people)} person folder(s) with images: a pairs file needs at least "
                            f"2 (expected {root}/<person>/<photo>)")
    return people


def is_lfw_named(people: dict[str, list[Path]]) -> bool:
    """True if every person's files are exactly <person>_0001.jpg ... <person>_<k>.jpg."""
    for name, files in people.items():
        want = [Path(image_relpath(name, i + 1)).name for i in range(len(files))]
        if [f.name for f in files] != want:
            return False
    return True


def assign_folds(names: list[str], folds: int, seed: int) -> list[list[str]]:
    """Shuffle the people (seeded) and deal them round-robin into `folds` disjoint groups."""
    order = np.random.default_rng(seed).permutation(len(names))
    groups = [[] for _ in range(folds)]
    for k, i in enumerate(order):
        groups[k % folds].append(names[i])
    return [sorted(g) for g in groups]


def capacity(people: dict[str, list[Path]], group: list[str]) -> tuple[int, int]:
    """(possible same-person pairs, possible different-person pairs) within one fold."""
    sizes = [len(people[n]) for n in group]
    same = sum(s * (s - 1) // 2 for s in sizes)
    total = sum(sizes)
    diff = (total * total - sum(s * s for s in sizes)) // 2
    return same, diff


def _same_pairs(people, group, n, rng) -> list[tuple[str, int, int]]:
    # Each person's unused pairs, shuffled; people take turns so one with 30 photos does not dominate.
    pools = {p: [c for c in combinations(range(1, len(people[p]) + 1), 2)] for p in group if len(people[p]) > 1}
    for p in pools:
        pools[p] = [pools[p][i] for i in rng.permutation(len(pools[p]))]
    out = []
    while len(out) < n:
        turn = [p for p in pools if pools[p]]
        for i in rng.permutation(len(turn)):
            p = turn[i]
            a, b = pools[p].pop()
            out.append((p, a, b))
            if len(out) == n:
                break
    return out


def _diff_pairs(people, group, n, rng) -> list[tuple[str, int, str, int]]:
    seen, out = set(), []
    while len(out) < n:
        i, j = sorted(rng.choice(len(group), size=2, replace=False))
        a, b = group[i], group[j]
        key = (a, int(rng.integers(1, len(people[a]) + 1)), b, int(rng.integers(1, len(people[b]) + 1)))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def make_pairs(root, out, folds: int = 10, per_fold: int | None = None, seed: int = 0,
               lfw_layout: str | os.PathLike | None = None, train_dir: str | os.PathLike | None = None) -> dict:
    """Write the pairs file `out` (and the link tree `lfw_layout` if given); returns a summary."""
    if folds < 1:
        raise EdgefaceError(f"--folds must be >= 1, got {folds}")
    people = scan_people(root)
    if train_dir is not None:
        if not Path(train_dir).is_dir():
            raise EdgefaceError(f"training folder not found: {train_dir}")
        trained = {d.name for d in Path(train_dir).iterdir() if d.is_dir()}
        shared = sorted(set(people) & trained)
        if shared:
            raise EdgefaceError(f"{len(shared)} people of {root} are also in the training folder {train_dir} "
                                f"(e.g. {shared[0]!r}): held-out pairs need people the model never saw")
    lfw_named = is_lfw_named(people)
    if not lfw_named and lfw_layout is None:
        raise EdgefaceError(f"the photos in {root} are not named <person>/<person>_NNNN.jpg, which the bench "
                            "looks up: pass --lfw-layout LINKS to write an LFW-named tree of links beside them")
    if lfw_layout is not None and Path(lfw_layout).exists() and any(Path(lfw_layout).iterdir()):
        raise EdgefaceError(f"--lfw-layout folder {lfw_layout} is not empty: give a new folder")
    if len(people) < 2 * folds:
        raise EdgefaceError(f"{len(people)} people cannot fill {folds} identity-disjoint folds "
                            f"(each needs at least 2): use fewer --folds")
    groups = assign_folds(sorted(people), folds, seed)
    most = min(min(capacity(people, g)) for g in groups)
    if most == 0:
        raise EdgefaceError(f"some fold has no person with 2 or more photos: add photos or use fewer --folds")
    n = min(most, MAX_PER_FOLD) if per_fold is None else per_fold
    if n < 1 or n > most:
        raise EdgefaceError(f"--per-fold {n}: these {len(people)} people allow 1 to {most} pairs of each kind "
                            f"per fold with {folds} folds")
    rng = np.random.default_rng(seed)
    lines = [f"{folds}\t{n}"]
    for g in groups:
        lines += [f"{p}\t{a}\t{b}" for p, a, b in _same_pairs(people, g, n, rng)]
        lines += [f"{p}\t{a}\t{q}\t{b}" for p, a, q, b in _diff_pairs(people, g, n, rng)]
    links = write_lfw_links(people, lfw_layout) if lfw_layout is not None else None
    write_text_atomic(out, "\n".join(lines) + "\n")
    return {"people": len(people), "images": sum(map(len, people.values())), "folds": folds, "per_fold": n,
            "pairs": 2 * n * folds, "lfw_named": lfw_named, "links": links,
            "bench_root": str(lfw_layout if lfw_layout is not None else root)}


def write_lfw_links(people: dict[str, list[Path]], dst: str | os.PathLike) -> int:
    """dst/<person>/<person>_NNNN.jpg -> the person's NNNN-th photo (sorted), as absolute symlinks."""
    dst = Path(dst)
    n = 0
    for name, files in people.items():
        (dst / name).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files, 1):
            os.symlink(f.resolve(), dst / image_relpath(name, i))
            n += 1
    return n

