"""The distillation teacher on a face run's own held-out CelebA validation pairs: the ceiling the
student's `val_acc` (benchmarks/face_models.md) chases, on exactly the same identities and pairs.

    .venv/bin/python benchmarks/teacher_val.py runs/face_edge_morphs2 [--teacher ../shared/teachers/mobilefacenet-ncnn]
"""
import argparse
import json
from pathlib import Path

import edgeface  # noqa: F401  (tf-keras before TensorFlow)

from edgeface.bench.verification import best_threshold, cosine_scores
from edgeface.errors import EdgefaceError, run_main
from edgeface.train.face import FaceTask, resolve_config
from edgeface.utils.io import read_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--teacher", default=None, help="teacher spec (default: the run's own train.teacher)")
    a = ap.parse_args(argv)
    run = Path(a.run)
    cfg = resolve_config(run, resume=True)
    cfg["data"]["extra"] = []  # the split depends only on the labelled folder and the seed
    spec = a.teacher or cfg["train"]["teacher"]
    if not spec:
        raise EdgefaceError(f"{run} was not distilled: pass --teacher")
    data_dir = read_json(run / "run.json", "run.json")["data"]["dir"]
    trainer = FaceTask(data_dir, cfg)
    trainer.load_data()  # the same identity split and pairs as the run's validation
    if trainer.val is None:
        raise EdgefaceError(f"{run} has no validation split (data.val_fraction = 0)")
    from edgeface.teachers import load_teacher, teacher_embeddings

    teacher = load_teacher(spec)
    # no cache file: the held-out faces' targets never enter the training store
    plain, mirror = teacher_embeddings(teacher, trainer.val.paths, None)
    out = {"run": str(run), "teacher": teacher.name, "val_images": len(plain), "val_pairs": int(len(trainer.val_same))}
    for name, emb in (("val_acc", plain), ("val_acc_flip", plain + mirror)):
        thr, acc = best_threshold(cosine_scores(emb, trainer.val_pairs), trainer.val_same)
        out[name], out[name + "_threshold"] = round(float(acc), 4), round(float(thr), 4)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
