"""`edgeface data lfw-overlap`: listed with the data commands, defined here because it runs a
teacher (teachers sit above data, so `edgeface.data.cli` cannot import it). Importing this module
adds the command to the data group; the top CLI loads the group from here.
"""
from __future__ import annotations

from pathlib import Path

import click

from edgeface.data.cli import data, print_counts
from edgeface.errors import EdgefaceError


@data.command("lfw-overlap")
@click.argument("sets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--lfw", "lfw_dir", required=True, type=click.Path(path_type=Path),
              help="LFW aligned by `edgeface align` (the same template as SETS).")
@click.option("--teacher", required=True, help="Teacher embedder (e.g. ../shared/teachers/mobilefacenet-ncnn).")
@click.option("--threshold", type=float, default=None,
              help="Drop at cosine >= this to the nearest LFW face [default: 0.5, measured for the ncnn teacher; "
                   "its pair threshold 0.27 would drop every face].")
@click.option("--out", "dst", required=True, type=click.Path(path_type=Path),
              help="New folder: OUT/<set>/<path> hard links of the kept crops + lfw_overlap.json.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path),
              help="Keep the teacher embeddings here (teacher_<set>.npz) so a rerun is instant.")
def lfw_overlap_cmd(sets, lfw_dir, teacher, threshold, dst, cache_dir):
    """Drop every face of the aligned SETS the teacher matches to any LFW face (cosine >= threshold).

    LFW only removes training data here; nothing is chosen on it. OUT/teacher_<set>.npz holds the
    teacher's embeddings (face, mirror) of every kept face: distillation targets.
    """
    from edgeface.data.hygiene import check_new_dst, write_clean_tree
    from edgeface.teachers.base import copy_cache, load_teacher, set_cache
    from edgeface.teachers.lfw_overlap import OVERLAP_THRESHOLD, lfw_overlap

    check_new_dst(dst, list(sets))
    threshold = OVERLAP_THRESHOLD if threshold is None else threshold
    if not -1.0 <= threshold <= 1.0:
        raise EdgefaceError(f"--threshold is a cosine in [-1, 1], got {threshold}")
    t = load_teacher(teacher)
    kept, dropped, counts, n_lfw = lfw_overlap(list(sets), lfw_dir, t, threshold=threshold, cache_dir=cache_dir)
    report = {"sets": {n: str(Path(r).absolute()) for n, r in zip(counts, sets)},
              "lfw": str(Path(lfw_dir).absolute()), "lfw_faces": n_lfw,
              "teacher": t.describe(), "threshold": threshold, "counts": counts, "dropped": dropped}
    write_clean_tree(list(sets), kept, dst, "lfw_overlap.json", report)
    for (name, files), root in zip(kept.items(), sets):  # each kept crop's targets, for distillation
        copy_cache(t, [Path(root) / f for f in files], [Path(dst) / name / f for f in files],
                   set_cache(cache_dir, name) if cache_dir else None, set_cache(dst, name))
    click.echo(f"wrote {dst}: kept {sum(map(len, kept.values())):,} faces, dropped {len(dropped):,} at cosine >= "
               f"{threshold} to one of {n_lfw:,} LFW faces (list in {dst}/lfw_overlap.json)")
    print_counts(counts)


@click.group("teacher")
def teacher():
    """Precompute a teacher's embeddings (and its mirrors') for the trainer and `convert --fit`.

    \b
    edgeface teacher embed TEACHER ALIGNED_DIR CACHE_FILE [--shard K/N]   K-th of N shares (one per core)
    edgeface teacher merge OUT IN [IN ...]                                 join caches (OUT may be an IN)
    """


def parse_shard(text: str) -> tuple[int, int]:
    parts = text.split("/")
    k, n = (int(v) if v.isdigit() else -1 for v in parts) if len(parts) == 2 else (-1, -1)
    if not 0 <= k < n:
        raise EdgefaceError(f"--shard must be K/N with 0 <= K < N, got {text!r}")
    return k, n


@teacher.command("embed")
@click.argument("teacher_path", metavar="TEACHER")
@click.argument("aligned_dir", type=click.Path(path_type=Path))
@click.argument("cache_file", type=click.Path(path_type=Path))
@click.option("--shard", default="0/1", show_default=True,
              help="K/N: every N-th image from the K-th (run N processes, each with its own cache file, then merge).")
def embed(teacher_path, aligned_dir, cache_file, shard):
    """Embed every image under ALIGNED_DIR (and its mirror) with TEACHER into CACHE_FILE (resumes)."""
    from edgeface.teachers.base import load_teacher, teacher_embeddings
    from edgeface.utils.images import is_image_name

    k, n = parse_shard(shard)
    if not Path(aligned_dir).is_dir():
        raise EdgefaceError(f"aligned folder not found: {aligned_dir}")
    paths = sorted(p for p in Path(aligned_dir).rglob("*") if p.is_file() and is_image_name(p))[k::n]
    if not paths:
        raise EdgefaceError(f"no images under {aligned_dir}" + (f" in share {shard}" if n > 1 else ""))
    emb, _ = teacher_embeddings(load_teacher(teacher_path), paths, cache_file)
    click.echo(f"{len(paths)} embeddings of dim {emb.shape[1]} in {cache_file}")


@teacher.command("merge")
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
def merge(out, inputs):
    """Join the cache files INPUTS into OUT (written atomically; OUT may also be one of INPUTS)."""
    from edgeface.teachers.base import merge_caches

    click.echo(f"{merge_caches(out, list(inputs))} embeddings in {out}")
