"""Choose between face embedders on held-out CelebA identities, never LFW (issue 14's shipping rule).

    .venv/bin/python benchmarks/select_face_model.py cache/celeba/arcface112 CANDIDATE.tflite ... \
        --teacher ../shared/teachers/mobilefacenet-ncnn --json benchmarks/results/compression/selection.json

The validation faces are the split `convert --fit` holds out (identities, seed 0, 20%, CelebA's LFW
people left out). For each model: mean cosine of its flip-TTA embedding to the teacher's, and the
verification accuracy over every same/different pair of those faces at the best threshold (a
choice made on CelebA only; LFW stays the final report).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgeface.data.hygiene import CELEBA_VAL_CHOICES as VAL_CHOICES
from edgeface.errors import run_main


def pair_accuracy(emb: np.ndarray, labels: np.ndarray) -> float:
    """Best-threshold accuracy, balanced over same- and different-identity pairs."""
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    s, same = sims[iu], (labels[:, None] == labels[None, :])[iu]
    order = np.argsort(-s)
    tp = np.cumsum(same[order]) / same.sum()          # same pairs accepted at each threshold
    tn = 1 - np.cumsum(~same[order]) / (~same).sum()  # different pairs rejected
    return float(np.max((tp + tn) / 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--json")
    ap.add_argument("--val-identities", choices=VAL_CHOICES, default="fit",
                    help="fit: the split convert --fit holds out (51 people, seed 0); students: the 13 people "
                         "the shipped MobileNetV2 students never trained on (CELEBA_STUDENT_VAL)")
    a = ap.parse_args(argv)
    from edgeface.bench.embed import embed_paths
    from edgeface.data.hygiene import LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.compress import load_faces_split
    from edgeface.runtime.interpreter import l2_normalize
    from edgeface.spec import PIXEL_MEAN, PIXEL_STD
    from edgeface.teachers.base import load_teacher, teacher_embeddings
    from edgeface.utils.io import write_json_atomic

    _, val, info = load_faces_split(a.faces, (112, 112, 3), PIXEL_MEAN, PIXEL_STD, exclude=LFW_PEOPLE_IN_CELEBA,
                                    as_paths=True, val_identities=VAL_CHOICES[a.val_identities])
    labels = np.array([Path(p).parent.name for p in val])
    t, tm = teacher_embeddings(load_teacher(a.teacher), val, None)
    ref = l2_normalize(t + tm)
    rows = [{"model": "teacher", "val_cosine_to_teacher": 1.0, "val_pair_accuracy": pair_accuracy(ref, labels)}]
    for m in a.models:
        e = embed_paths(m, [Path(p) for p in val], threads=2)
        rows.append({"model": m, "bytes": Path(m).stat().st_size,
                     "val_cosine_to_teacher": float(np.mean(np.sum(e * ref, axis=1))),
                     "val_pair_accuracy": pair_accuracy(e, labels)})
    for r in rows:
        print(f"{r['model']:<60} cosine to teacher {r['val_cosine_to_teacher']:.4f}  pair accuracy {100 * r['val_pair_accuracy']:.2f}%")
    if a.json:
        write_json_atomic(a.json, {"faces": info, "val_faces": len(val), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
