"""Grow a trained MobileNetV2 student wider and deeper at 28x28 and 14x14, keeping its function (issue 15).

    .venv/bin/python benchmarks/grow_student.py runs/recovered/mnv2_r9/model.keras \
        --config recipes/configs/face_mnv2_grown_real.toml \
        --calib "$(source recipes/lib.sh; calib_train_people)" --out runs/grown/mnv2_w14

The shipped students spend their parameters at 7x7 (MobileFaceNet, the teacher, at 14x14 and 28x28;
face_models.md, round 9). `edgeface.nets.grow` moves capacity there without a restart: a wider stream
and inner width and extra residual blocks, initialised so the grown model computes what the trained one
does. The grown model is the one CONFIG's [model] builds (as `edgeface train face --config CONFIG` would).
Writes OUT/model.keras (that run's `train.init`) and OUT/grow.json:
parameters, MACs, the int8 size of the trained file (converted with CALIB faces of the training people, weights
made distinct: the converter stores equal buffers once), and on the
313 crops of the 13 held-out CelebA people the grown model's cosine to the trained one (must be ~1) and
to the teacher (where training resumes). No LFW.
"""
import argparse
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import run_main
from student_variants import held_out_cosine, held_out_faces


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("init", help="the trained student's model.keras")
    ap.add_argument("--config", required=True, help="the training config (TOML) of the grown model: its [model]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--calib", help="calibration faces (training people only) for the real int8 size")
    ap.add_argument("--faces", default="cache/celeba/arcface112")
    ap.add_argument("--teacher", default="../shared/teachers/mobilefacenet-ncnn")
    ap.add_argument("--per-tensor", action="store_true", help="int8 sizes with one scale per weight tensor "
                    "(as `edgeface convert --per-tensor`)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from edgeface.nets import get_model
    from edgeface.nets.grow import distinct_weights, grow_mobilenetv2
    from edgeface.nets.io import load_model, save_model
    from edgeface.nets.mobilenetv2 import count_macs
    from edgeface.train.face import resolve_config
    from edgeface.utils.io import write_json_atomic

    t0 = time.time()
    model_cfg = dict(resolve_config(Path(a.out), a.config)["model"])
    old = load_model(a.init)
    new = get_model(model_cfg.pop("name"), **model_cfg)
    grow_mobilenetv2(old, new, seed=a.seed)
    x, ref = held_out_faces(a.faces, a.teacher)
    report = {"init": a.init, "config": a.config, "model": model_cfg, "seed": a.seed, "val_faces": len(x),
              "params": [old.count_params(), new.count_params()],
              "macs": [count_macs(old), count_macs(new)]}
    e_old, e_new = old.predict(x, verbose=0), new.predict(x, verbose=0)
    cos = np.sum(e_old * e_new, axis=1) / (np.linalg.norm(e_old, axis=1) * np.linalg.norm(e_new, axis=1))
    report["min_cosine_grown_to_trained"] = float(cos.min())
    report["cosine_to_teacher"] = [held_out_cosine(old, x, ref), held_out_cosine(new, x, ref)]
    if a.calib:
        from edgeface.data.calibration import load_calibration
        from edgeface.optimize.tflite_bytes import convert_bytes
        reps, _ = load_calibration(a.calib, (112, 112, 3))
        # The converter stores equal weight buffers once, and a grown model's copied blocks and zero projections
        # are equal until training moves them: measure a copy with distinct weights, the size of the trained file
        report["int8_bytes"] = [len(convert_bytes(distinct_weights(m, a.seed), "int8", reps, per_channel=not a.per_tensor))
                                for m in (old, new)]
        report["int8_per_tensor"] = a.per_tensor
    out = Path(a.out)
    save_model(new, out / "model.keras")
    report["wall_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / "grow.json", report)
    for k in ("params", "macs", "int8_bytes", "cosine_to_teacher"):
        if k in report:
            print(f"{k:>20}: {report[k][0]:,} -> {report[k][1]:,}" if k != "cosine_to_teacher"
                  else f"{k:>20}: {report[k][0]:.4f} -> {report[k][1]:.4f}")
    print(f"min cosine grown/trained: {report['min_cosine_grown_to_trained']:.6f}; wrote {out}/model.keras")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
