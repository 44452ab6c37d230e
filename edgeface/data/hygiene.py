"""Training-data hygiene before any training: exact duplicates out. TF-free.

- `dedupe`: files with the same content (sha256) within and across sets keep their first copy
  (sets in the order given, files in sorted path order). Hashes come from a set's manifest.json
  (written by `edgeface data get`) when it has one, else are computed.
- LFW look-alikes out (`edgeface data lfw-overlap`) needs a teacher, a stage above data: it lives in
  `edgeface.teachers.lfw_overlap` and uses the folder helpers here.

Both write DST/<set>/<relative path> as hard links to the kept files (copies across file systems)
and a JSON report with per-set counts and every dropped file, into a temporary folder renamed onto
DST at the end, so an interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from edgeface.data.get import MANIFEST as GET_MANIFEST, read_manifest
from edgeface.data.pairs import MANIFEST as ALIGN_MANIFEST
from edgeface.errors import EdgefaceError
from edgeface.utils.images import is_image_name
from edgeface.utils.io import sha256_file
from edgeface.utils.progress import progress

# CelebA identities of ../shared/data/faces/celeba that are LFW people (found by lfw-overlap,
# checked by eye; benchmarks/data_sets.md): leakage, never train on them.
LFW_PEOPLE_IN_CELEBA = ("7218", "7261", "7355", "7398")

# The 13 CelebA people the shipped MobileNetV2 students were validated on (face config
# val_fraction 0.05, seed 0): they trained on every other CelebA person, so a fair comparison
# with them holds these people out of the challenger's training too.
CELEBA_STUDENT_VAL = ("7201", "7240", "7260", "7277", "7279", "7295", "7307", "7308", "7343", "7350", "7381",
                      "7462", "7491")
# the held-out CelebA people a comparison can use: the fit's random split (None) or the students'
CELEBA_VAL_CHOICES = {"fit": None, "students": CELEBA_STUDENT_VAL}


def image_files(root: Path) -> list[str]:
    """Relative paths of the images under root (sorted; hidden files and folders skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f).relative_to(root).as_posix() for f in sorted(filenames)
                if not f.startswith(".") and is_image_name(f)]
    return sorted(out)


def set_names(roots: list[Path]) -> list[str]:
    names = [Path(r).name for r in roots]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise EdgefaceError(f"two sets are named {dup[0]!r} (the folder name names the set): rename one")
    for r in roots:
        if not Path(r).is_dir():
            raise EdgefaceError(f"set folder not found: {r}")
    return names


def content_hashes(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every image: from `data get`'s manifest.json if present, else computed."""
    m = read_manifest(root)
    files = image_files(root)
    if m and "files" in m:
        known = {e["path"]: e["sha256"] for e in m["files"]}
        if set(known) == set(files):
            return {p: known[p] for p in files}
        print(f"edgeface: note: {root}/{GET_MANIFEST} does not list exactly the images there: hashing them",
              file=sys.stderr)
    return {p: sha256_file(root / p) for p in progress(files, desc=f"sha256 {root.name}", unit="file")}


def find_duplicates(roots: list[Path], held_out: list[Path] = ()) -> tuple[dict[str, list[str]], list[dict], dict]:
    """(set -> kept relative paths, dropped [{set, path, same_as}], per-set counts).

    `held_out` sets (e.g. a test split) are never kept: they only remove the training files that are
    byte-identical to one of theirs (`same_as` then starts with "held-out:")."""
    names = set_names(list(roots) + list(held_out))[:len(roots)]
    first: dict[str, str] = {}  # sha256 -> "set/path" of the kept copy
    for h_root in held_out:
        for rel, h in content_hashes(Path(h_root)).items():
            first.setdefault(h, f"held-out:{Path(h_root).name}/{rel}")
    kept, dropped, counts = {}, [], {}
    for name, root in zip(names, roots):
        hashes = content_hashes(Path(root))
        kept[name] = []
        where = Counter()
        for rel, h in hashes.items():
            if h in first:
                same_as = first[h]
                origin = same_as.split("/", 1)[0]
                where["held_out" if origin.startswith("held-out:") else "within" if origin == name else "earlier"] += 1
                dropped.append({"set": name, "path": rel, "same_as": same_as})
            else:
                first[h] = f"{name}/{rel}"
                kept[name].append(rel)
        counts[name] = {"files": len(hashes), "duplicates_within": where["within"],
                        "duplicates_of_earlier_sets": where["earlier"], "kept": len(kept[name])}
        if held_out:
            counts[name]["copies_of_held_out"] = where["held_out"]
    return kept, dropped, counts


def detected_faces(root: Path) -> tuple[list[str], int]:
    """(crops of detected faces, number of non-faces) of an `edgeface align` folder; any other folder:
    (all its images, 0). Fallback centre crops (no detection) and unreadable files are the non-faces."""
    if not (Path(root) / ALIGN_MANIFEST).is_file():
        return image_files(Path(root)), 0
    from edgeface.align.pipeline import read_manifest as read_align_manifest

    records = read_align_manifest(root)
    ok = sorted(r["output"] for r in records if r.get("status") == "ok" and r.get("output"))
    return ok, len(records) - len(ok)


def write_clean_tree(roots: list[Path], kept: dict[str, list[str]], dst: Path, report_name: str, report: dict) -> None:
    """dst/<set>/<path> for every kept file (hard links, copies across file systems) + dst/report_name."""
    dst = Path(dst).absolute()
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        for (name, files), root in zip(kept.items(), roots):
            for rel in progress(files, desc=f"link {name}", unit="file"):
                target = work / name / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(Path(root) / rel, target)
                except OSError:
                    shutil.copy2(Path(root) / rel, target)
        with open(work / report_name, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        os.rename(work, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_new_dst(dst: Path, roots: list[Path]) -> None:
    """Refuse an existing DST, or one inside a source set (validated before any hashing or embedding)."""
    dst = Path(dst).absolute()
    if dst.exists():
        raise EdgefaceError(f"{dst} already exists: choose a new folder")
    for r in roots:
        if Path(r).absolute() in dst.parents:
            raise EdgefaceError(f"{dst} is inside the source set {r}: choose a folder outside it")
