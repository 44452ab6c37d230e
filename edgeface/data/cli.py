"""`edgeface data`: the registered public face sets, pairs files and training-data hygiene. TF-free.

    edgeface data list [--json]                          the registry
    edgeface data get NAME DEST [--mirror GITDIR]        clone (or read a local mirror) at the pinned commit,
                                                         extract the one path, check counts, write manifest.json
    edgeface data pairs DIR --out pairs.txt              an LFW-format View 2 pairs file from <person>/<photo>
    edgeface data dedupe SET_DIR... --out DST            exact duplicates removed (content hash), hard links
    edgeface data lfw-overlap ALIGNED... --lfw ALIGNED   training faces the teacher matches to any LFW face
    edgeface data views ALIGNED SRC DST [--views 8]      distillation views (clean + jittered, damaged)
    edgeface data morphs ALIGNED DST [--mode blend|parts|bands] [--count N]   label-free faces of nobody
    edgeface data faces SRC DST [--views 2]              detect + align + views of any face images

lfw-overlap runs a teacher, a stage above data, so it is defined in `edgeface.teachers.cli`, which
adds it to this group (the top CLI loads the group from there).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgeface.errors import EdgefaceError

REGISTRY_OPTION = click.option(
    "--registry", "registry_file", type=click.Path(path_type=Path),
    help="JSON list of extra data-set entries (same fields as `data list --json`).")


@click.group("data")
def data():
    """Get the registered public face sets; make pairs files; remove duplicates and LFW look-alikes."""


@data.command("list")
@REGISTRY_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_cmd(registry_file, as_json):
    """Print the registered data sets: repository, pinned commit, path, file count, terms."""
    from edgeface.data.registry import load_registry

    reg = load_registry(registry_file)
    if as_json:
        click.echo(json.dumps([d.describe() for d in reg.values()], indent=2))
        return
    for d in reg.values():
        click.echo(f"{d.name}: {d.files:,} files")
        click.echo(f"  source : {d.clone_url} @ {d.commit}, path {d.path!r}")
        if d.classes:
            click.echo("  classes: " + ", ".join(f"{c} {n:,}" for c, n in d.classes.items()))
        click.echo(f"  what   : {d.what}")
        click.echo(f"  terms  : {d.terms}")


@data.command("get")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--mirror", type=click.Path(path_type=Path),
              help="Read this local git directory (a mirror or clone) instead of cloning from the internet.")
@click.option("--force", is_flag=True, help="Replace an existing DEST (only once the new copy passed every check).")
@REGISTRY_OPTION
def get_cmd(name, dest, mirror, force, registry_file):
    """Extract data set NAME into DEST at its pinned commit and write DEST/manifest.json."""
    from edgeface.data.get import get_dataset_files
    from edgeface.data.registry import get_dataset, load_registry

    if str(dest).startswith("-"):
        raise EdgefaceError(f"DEST {dest!r} looks like an option: give a folder path")
    ds = get_dataset(name, load_registry(registry_file))
    m = get_dataset_files(ds, dest, mirror=mirror, force=force)
    if m.get("already"):
        click.echo(f"{ds.name}: {dest} already holds its {m['count']:,} files at {ds.commit[:12]} "
                   "(manifest.json); nothing to do (--force extracts again)")
        return
    classes = (" (" + ", ".join(f"{c} {n}" for c, n in m["classes"].items()) + ")") if m["classes"] else ""
    click.echo(f"{ds.name}: {m['count']:,} files{classes}, {m['bytes']:,} bytes, {ds.repo} @ {ds.commit[:12]} "
               f"{ds.path!r} -> {dest} in {m['seconds']['total']:.1f} s; sha256 of each in {dest}/manifest.json")


@data.command("pairs")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The pairs file to write.")
@click.option("--folds", default=10, show_default=True, type=int, help="Identity-disjoint folds (LFW: 10).")
@click.option("--per-fold", type=int, help="Same-person (and as many different-person) pairs per fold "
              "[default: as many as every fold allows, at most 300].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--lfw-layout", type=click.Path(path_type=Path),
              help="Write LFW-named links <person>/<person>_NNNN.jpg here (needed unless ROOT is named so).")
@click.option("--train", "train_dir", type=click.Path(path_type=Path),
              help="The training folder: refuse if any person of ROOT is also in it.")
def pairs_cmd(root, out, folds, per_fold, seed, lfw_layout, train_dir):
    """An LFW-format View 2 pairs file from ROOT/<person>/<photo> (your own held-out people).

    Image i of a person is their i-th photo in sorted file-name order (from 1); each person is in
    exactly one fold. Bench on it with: edgeface bench MODEL --lfw ROOT_OR_LINKS --pairs OUT
    """
    from edgeface.data.make_pairs import make_pairs

    if str(out).startswith("-"):
        raise EdgefaceError(f"--out {out!r} looks like an option: give a file path")
    s = make_pairs(root, out, folds=folds, per_fold=per_fold, seed=seed, lfw_layout=lfw_layout, train_dir=train_dir)
    links = f"; {s['links']} LFW-named links in {lfw_layout}" if s["links"] is not None else ""
    click.echo(f"wrote {out}: {s['folds']} folds x {s['per_fold']} same + {s['per_fold']} different pairs "
               f"({s['pairs']} pairs) from {s['people']} people, {s['images']} photos{links}")
    click.echo(f"bench on it: edgeface bench MODEL.tflite --lfw {s['bench_root']} --pairs {out}")


def print_counts(counts: dict) -> None:
    for name, c in counts.items():
        click.echo(f"  {name}: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in c.items()))


@data.command("dedupe")
@click.argument("sets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "dst", required=True, type=click.Path(path_type=Path),
              help="New folder: OUT/<set>/<path> hard links of the kept files + dedupe.json.")
@click.option("--held-out", multiple=True, type=click.Path(path_type=Path),
              help="A test split (repeatable): never kept, only drops training files identical to one of its files.")
def dedupe_cmd(sets, dst, held_out):
    """Drop exact duplicates (same sha256) within and across SETS; the first copy is kept.

    Sets are taken in the order given, each set's files in sorted order; a set is named by its folder.
    """
    from edgeface.data.hygiene import check_new_dst, find_duplicates, write_clean_tree

    check_new_dst(dst, list(sets))
    kept, dropped, counts = find_duplicates(list(sets), list(held_out))
    report = {"sets": {n: str(Path(r).absolute()) for n, r in zip(counts, sets)},
              "held_out": [str(Path(h).absolute()) for h in held_out], "counts": counts, "dropped": dropped}
    write_clean_tree(list(sets), kept, dst, "dedupe.json", report)
    click.echo(f"wrote {dst}: kept {sum(map(len, kept.values())):,} files, dropped {len(dropped):,} duplicates "
               f"(list in {dst}/dedupe.json)")
    print_counts(counts)


# ---- training sets made from aligned faces (views, label-free morphs, small-face crops) ----------

SEED_OPTION = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same files).")


def _print_info(info: dict) -> None:
    click.echo(json.dumps(info))


@data.command("views")
@click.argument("aligned_dir", type=click.Path(path_type=Path))
@click.argument("src_root", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--views", type=click.IntRange(min=1), default=8, show_default=True,
              help="Views per face: view 0 clean, the others re-aligned from the photo with jitter and damage.")
@SEED_OPTION
def views_cmd(aligned_dir, src_root, dst, views, seed):
    """Distillation views of every face `edgeface align` wrote in ALIGNED_DIR from the photos in SRC_ROOT."""
    from edgeface.data.views import make_views

    _print_info(make_views(aligned_dir, src_root, dst, views, seed=seed))


@data.command("morphs")
@click.argument("aligned_dir", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--count", type=click.IntRange(min=1), default=30000, show_default=True)
@click.option("--mode", type=click.Choice(["blend", "parts", "bands"]), default="blend", show_default=True,
              help="blend: two people's faces mixed; parts: upper face of one, lower of another; bands: eyes/nose/mouth of three.")
@SEED_OPTION
def morphs_cmd(aligned_dir, dst, count, mode, seed):
    """Label-free faces of people who do not exist, made from aligned faces of different identities."""
    from edgeface.data.distill_sets import make_morphs

    _print_info(make_morphs(aligned_dir, dst, count, seed=seed, mode=mode))


@data.command("faces")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--views", type=click.IntRange(min=1), default=2, show_default=True)
@SEED_OPTION
def faces_cmd(src, dst, views, seed):
    """Detect, align and write VIEWS views of every face image under SRC (any layout, e.g. small FER2013 crops)."""
    from edgeface.data.distill_sets import make_face_views

    _print_info(make_face_views(src, dst, views, seed=seed))
