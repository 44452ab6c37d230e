"""Where the LFW crops for a bench come from: an aligned folder as given, or a raw tree aligned once.

A raw LFW-layout root is aligned by `edgeface.align.pipeline.align_folder`, only the images the
pairs file names (7,701 of LFW's 13,233 for View 2), into
cache_dir()/aligned/<template>/<name>-<hash of the absolute path>; later benches reuse it, and a
different pairs file aligns only what the cache lacks.
An aligned root is recognised by its manifest.jsonl (written by `edgeface align`).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from edgeface.data.pairs import Pairs, is_aligned_root, read_pairs
from edgeface.errors import EdgefaceError
from edgeface.utils.paths import cache_dir


def default_pairs(lfw_dir: Path) -> Path:
    return Path(lfw_dir).absolute().parent / "pairs.txt"


def protocol_pairs(pairs_file: Path, image_root: Path | None = None, resolve="raw") -> Pairs:
    """read_pairs, plus the protocol's own need: the threshold of each fold is trained on the others."""
    pairs = read_pairs(pairs_file, image_root, resolve=resolve)
    if pairs.n_folds < 2:
        raise EdgefaceError(f"{pairs_file}: {pairs.n_folds} fold; the k-fold verification protocol needs >= 2 "
                            "(header `FOLDS N`)")
    return pairs


def aligned_cache_for(raw_root: Path, template: str) -> Path:
    absolute = Path(raw_root).resolve()
    digest = hashlib.sha256(str(absolute).encode()).hexdigest()[:8]
    return cache_dir() / "aligned" / template / f"{absolute.name}-{digest}"


def aligned_template(root: Path) -> str | None:
    """The template an aligned folder was made with (align_options.json), if recorded."""
    p = Path(root) / "align_options.json"
    try:
        return json.loads(p.read_text()).get("template")
    except (OSError, ValueError, AttributeError):
        return None


def raw_source_of(aligned_root: Path) -> Path | None:
    """The raw tree an aligned folder came from (summary.json `src`), if it still exists."""
    try:
        src = json.loads((Path(aligned_root) / "summary.json").read_text()).get("src")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(src) if src and Path(src).is_dir() else None


def aligned_pairs(lfw_dir: Path, pairs_file: Path, template: str, workers: int = 2) -> tuple[Pairs, Path, Path | None]:
    """(pairs resolved to aligned crops, aligned root, raw root or None) for one template."""
    lfw_dir = Path(lfw_dir)
    if not lfw_dir.is_dir():
        raise EdgefaceError(f"LFW folder not found: {lfw_dir}")
    if is_aligned_root(lfw_dir):
        made_with = aligned_template(lfw_dir)
        if made_with and made_with != template:
            print(f"edgeface: note: {lfw_dir} was aligned with {made_with}, the model expects {template}; "
                  "crops are resized to the model input", file=sys.stderr)
        return protocol_pairs(pairs_file, lfw_dir, resolve="aligned"), lfw_dir, raw_source_of(lfw_dir)

    # Raw tree: validate the pairs against it first (a bad pairs file should fail before an hour of alignment).
    raw = protocol_pairs(pairs_file, lfw_dir, resolve="raw")
    dst = aligned_cache_for(lfw_dir, template)
    try:
        pairs = read_pairs(pairs_file, dst, resolve="aligned") if is_aligned_root(dst) else None
    except EdgefaceError:
        pairs = None  # the cache is incomplete: finish it below
    if pairs is None:
        from edgeface.align.pipeline import align_folder

        named = [p.relative_to(lfw_dir).as_posix() for p in raw.unique_images()]
        print(f"edgeface: aligning the {len(named):,} images the pairs name from {lfw_dir} once into {dst} "
              f"(template {template}); later runs reuse it", file=sys.stderr)
        summary = align_folder(lfw_dir, dst, template=template, workers=workers, only=named)
        print(f"edgeface: aligned {summary['total']} images, counts {summary['counts']}", file=sys.stderr)
        pairs = read_pairs(pairs_file, dst, resolve="aligned")
    return pairs, dst, lfw_dir


def raw_images_for_e2e(pairs_file: Path, raw_root: Path | None, n: int) -> list[Path]:
    """The first n images named by the pairs, in the raw tree (real photos for end-to-end timing)."""
    if raw_root is None or n <= 0:
        return []
    try:
        pairs = read_pairs(pairs_file, raw_root, resolve="raw")
    except EdgefaceError:
        return []
    return pairs.unique_images()[:n]
