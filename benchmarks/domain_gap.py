"""How close each face model stays to its teacher on faces from different sources (issue 15).

    .venv/bin/python benchmarks/domain_gap.py models/edgeface_face_int8.tflite models/edgeface_face_mnv2_int8.tflite \
        models/edgeface_face_micro_int8.tflite --teacher ../shared/teachers/mobilefacenet-ncnn \
        --celeba cache/celeba/arcface112 --set utkface=../data/clean/utkface --set all_age_faces=../data/clean/all_age_faces \
        --set scut_fbp5500=../data/clean/scut_fbp5500 --json benchmarks/results/face_ablation/domain_gap.json

For every model and every source: the mean cosine of its flip-TTA embedding to the teacher's. The CelebA
row is the 13 held-out people the shipped MobileNetV2 students never trained on; the other rows are a
seeded sample of each cleaned real-face set (faces those students never saw either). A student that is
close to its teacher on CelebA and far on the others has learnt CelebA's photos, not faces. No LFW.

--held-out F draws from the faces `data.extra_val_fraction = F` keeps out of training (the same name hash),
so models trained on the rest of a set can be compared on faces none of them saw (round 9). The last row is
the mean over the sources, each weighing the same.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError, run_main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--celeba", help="aligned CelebA crops: the 13 held-out people (CELEBA_STUDENT_VAL)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                    help="a cleaned face set (teacher_<NAME>.npz beside it serves the teacher's embeddings)")
    ap.add_argument("--sample", type=int, default=1000, help="faces drawn from each set (seed 0)")
    ap.add_argument("--held-out", type=float, metavar="F",
                    help="draw only from the faces data.extra_val_fraction = F holds out of training")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.held_out is not None and not 0 < a.held_out < 1:
        raise EdgefaceError(f"--held-out must be in (0, 1), got {a.held_out}")
    from edgeface.bench.embed import embed_paths
    from edgeface.data.distill_sets import split_extra_held_out
    from edgeface.utils.images import is_image_name
    from edgeface.data.hygiene import CELEBA_STUDENT_VAL, LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.compress import load_faces_split
    from edgeface.runtime.interpreter import l2_normalize
    from edgeface.spec import PIXEL_MEAN, PIXEL_STD
    from edgeface.teachers.base import load_teacher, teacher_embeddings
    from edgeface.utils.io import write_json_atomic

    for m in a.models:
        if not Path(m).is_file():
            raise EdgefaceError(f"model not found: {m}")
    sources = {}
    if a.celeba:
        _, val, _ = load_faces_split(a.celeba, (112, 112, 3), PIXEL_MEAN, PIXEL_STD, exclude=LFW_PEOPLE_IN_CELEBA,
                                     as_paths=True, val_identities=CELEBA_STUDENT_VAL)
        sources["celeba_13_held_out"] = ([str(p) for p in val], [])
    for spec in a.set:
        name, _, folder = spec.partition("=")
        folder = Path(folder)
        if not name or not folder.is_dir():
            raise EdgefaceError(f"--set wants NAME=DIR of an existing folder, got {spec!r}")
        paths = sorted(str(p) for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))
        if a.held_out is not None:
            paths = split_extra_held_out([folder], paths, a.held_out)[1]
        if not paths:
            raise EdgefaceError(f"no images under {folder}" + (" held out" if a.held_out is not None else ""))
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(len(paths), min(a.sample, len(paths)), replace=False))
        cache = folder.parent / f"teacher_{name}.npz"
        sources[name] = ([paths[i] for i in pick], [cache] if cache.is_file() else [])
    if not sources:
        raise EdgefaceError("give --celeba and/or --set NAME=DIR")

    teacher = load_teacher(a.teacher)
    stems = [Path(m).stem for m in a.models]
    names = stems if len(set(stems)) == len(stems) else list(a.models)  # a candidate may share the shipped name
    rows = []
    for name, (paths, caches) in sources.items():
        t, tm = teacher_embeddings(teacher, paths, None, also_from=caches)
        ref = l2_normalize(t + tm)
        row = {"source": name, "faces": len(paths)}
        for m, n in zip(a.models, names):
            e = embed_paths(m, [Path(p) for p in paths], threads=2)
            row[n] = float(np.mean(np.sum(e * ref, axis=1)))
        rows.append(row)
    rows.append({"source": "mean over sources", "faces": sum(r["faces"] for r in rows),
                 **{n: float(np.mean([r[n] for r in rows])) for n in names}})
    print("| source | faces | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for r in rows:
        print(f"| {r['source']} | {r['faces']:,} | " + " | ".join(f"{r[n]:.4f}" for n in names) + " |")
    if a.json:
        write_json_atomic(a.json, {"teacher": a.teacher, "sample": a.sample, "held_out": a.held_out, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
