"""Continue a fitted model's recovery on a wider face mixture (issue 15, round 7b): the CelebA views
of the training identities (damaged, re-aligned crops; the fit's 51 validation people and CelebA's
four LFW people left out) beside the fit's own recovery faces, distilled from the ncnn teacher.

    .venv/bin/python benchmarks/recover_more.py runs/mobilefacenet_micro runs/mobilefacenet_micro_7b \
        --steps 9000 --lr 5e-4
    .venv/bin/python benchmarks/recover_more.py runs/mobilefacenet_micro_7b runs/mobilefacenet_micro_7c \
        --model runs/mobilefacenet_micro_7b/model.keras --steps 12000 --lr 3e-4
    # round 7c: from the pruned round 8, holding out the 13 people the shipped students never saw
    .venv/bin/python benchmarks/recover_more.py runs/mobilefacenet_micro runs/mobilefacenet_micro_7c \
        --model runs/mobilefacenet_micro/fit/round_8.keras --val-identities students --steps 15000 --lr 1e-3
    # issue 14, speed: the shipped 1 MB model's PReLUs annealed to ReLU (fused into the convolutions)
    .venv/bin/python benchmarks/recover_more.py runs/face_1mb_graph runs/face_1mb_relu \
        --model runs/face_1mb_graph/model.keras --anneal-relu 3000 --steps 5000 --lr 2e-4

Writes OUT/model.keras (best validation loss, checked every 500 steps; the same 1,010 held-out CelebA
faces as `convert --fit`), OUT/run.json (the source run's, so the card keeps its licence) and
OUT/recovery.json (the curve). --anneal-relu N shrinks every PReLU slope linearly to 0 over the first N
steps (activation.SlopeAnneal) and saves a ReLU network; only checkpoints after the anneal can be best.
OUT/last.keras and the curve are written at every check, so --resume continues from the last one
(the schedule resumes at its step; Adam's moments restart). Then `edgeface convert OUT --fit --budget 300000 ...` writes the int8
file in its deployed form (nothing left to prune, no further training).
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401
from edgeface.data.hygiene import CELEBA_VAL_CHOICES as VAL_CHOICES, LFW_PEOPLE_IN_CELEBA
from edgeface.errors import EdgefaceError, run_main
from edgeface.nets import load_model
from edgeface.nets.io import save_model
from edgeface.optimize.activation import SlopeAnneal, swap_prelu
from edgeface.optimize.compress import Faces, face_paths, load_crops, load_faces_split, recover
from edgeface.optimize.distill import distill_loss, mean_cosine, predict
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_EMBEDDING
from edgeface.teachers.base import load_teacher, teacher_embeddings
from edgeface.utils.io import read_json, write_json_atomic

STORE = "cache/teacher_embeddings/insightface-mobilefacenet-ncnn_7a35d5328d61.npz"
SETS = ("utkface", "all_age_faces", "scut_fbp5500")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src_run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--faces", type=Path, default=Path("cache/celeba/arcface112"))
    ap.add_argument("--views", type=Path, default=Path("cache/celeba/views8"))
    ap.add_argument("--clean", type=Path, default=Path("/work/data/clean"))
    ap.add_argument("--teacher", default="../shared/teachers/mobilefacenet-ncnn")
    ap.add_argument("--model", type=Path, help="the Keras model to continue (default: SRC_RUN/fit/final_best.keras; "
                                              "a recover_more output continues from SRC_RUN/model.keras)")
    ap.add_argument("--anneal-relu", type=int, default=0, metavar="N",
                    help="shrink the PReLU slopes linearly to 0 over the first N steps; save a ReLU network")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.keras at its recorded step")
    ap.add_argument("--val-identities", choices=VAL_CHOICES, default="fit",
                    help="fit: the split convert --fit holds out (51 people, seed 0); students: the 13 people "
                         "the shipped MobileNetV2 students never trained on (CELEBA_STUDENT_VAL)")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.resume and not (a.out / "recovery.json").is_file():
        raise EdgefaceError(f"nothing to resume: no {a.out / 'recovery.json'}")
    model = load_model(a.model or a.src_run / "fit" / "final_best.keras")
    resumed = read_json(a.out / "recovery.json", "recovery.json") if a.resume else None
    shape = tuple(model.input_shape[1:])
    train_paths, val_paths, split = load_faces_split(a.faces, shape, PIXEL_MEAN, PIXEL_STD, max_train=5000,
                                                     exclude=LFW_PEOPLE_IN_CELEBA, as_paths=True,
                                                     val_identities=VAL_CHOICES[a.val_identities])
    train_ids = {Path(p).parent.name for p in train_paths}
    views = [str(p) for p in sorted(a.views.rglob("*.png")) if p.parent.name in train_ids]
    real = [p for s in SETS for p in face_paths(a.clean / s)]
    paths = train_paths + views + real
    teacher = load_teacher(a.teacher)
    caches = [a.clean / f"teacher_{s}.npz" for s in SETS] + [a.src_run / "fit" / "targets" / f"teacher_{a.faces.name}.npz"]
    emb, emb_m = teacher_embeddings(teacher, paths + val_paths, STORE, also_from=[c for c in caches if c.exists()])
    n = len(paths)
    train = Faces(load_crops(paths, shape, PIXEL_MEAN, PIXEL_STD, np.float16), np.stack([emb[:n], emb_m[:n]], 1))
    val = Faces(load_crops(val_paths, shape, PIXEL_MEAN, PIXEL_STD), np.stack([emb[n:], emb_m[n:]], 1))
    val_x, val_t = val.with_flips()
    a.out.mkdir(parents=True, exist_ok=True)
    start = distill_loss(model, val_t, val_x, TASK_EMBEDDING)
    anneal = SlopeAnneal(model, a.anneal_relu) if a.anneal_relu else None
    first = 0
    if resumed:
        first = resumed["last_step"]
        model.set_weights(load_model(a.out / "last.keras").get_weights())
    record = {"source": str(a.src_run), "steps": a.steps, "lr": a.lr, "train_images": n, "celeba_crops": len(train_paths),
              "celeba_views": len(views), "real_faces": len(real), "val_images": len(val_paths),
              "val_identities": split["val_identities"], "val_split": a.val_identities, "model": str(a.model or ""),
              "start_val_loss": start, "anneal_relu": a.anneal_relu, "curve": []}
    best = {"loss": start}
    if resumed:
        record["curve"], best = resumed["curve"], resumed["best"]
    print(f"{n:,} training faces ({len(views):,} views of {len(train_ids)} people), val loss at start {start:.5f}")

    def deployed():  # the annealed network as ReLU layers (the same function once the slopes are 0)
        return swap_prelu(model, "relu")[0] if anneal else model

    def on_eval(done, loss):
        record["curve"].append({"step": done, "val_loss": round(loss, 6)})
        if anneal.keeps(done, loss, best["loss"], best.get("step", 0)) if anneal else loss < best["loss"]:
            best.update(loss=loss, step=done)
            save_model(deployed(), a.out / "model.keras")
        save_model(model, a.out / "last.keras")
        record["last_step"] = done
        print(f"step {done}/{a.steps}: val loss {loss:.5f} (best {best['loss']:.5f} at {best.get('step', 0)})", flush=True)
        write_json_atomic(a.out / "recovery.json", {**record, "best": best})

    recover(model, train, a.steps, 32, a.lr, seed=7, start=first, val=(val_x, val_t), eval_every=500,
            on_eval=on_eval, on_step=anneal, desc="recover on views + real faces")
    chosen = load_model(a.out / "model.keras") if (a.out / "model.keras").exists() else model
    record.update(best=best, val_cosine=mean_cosine(predict(chosen, val_x), val_t), wall_s=round(time.time() - t0, 1))
    write_json_atomic(a.out / "recovery.json", record)
    run = json.loads((a.src_run / "run.json").read_text())
    run["recovered_further"] = {k: v for k, v in record.items() if k != "curve"}
    write_json_atomic(a.out / "run.json", run)
    shutil.copy(a.src_run / "fit" / "state.json", a.out / "source_fit_state.json")
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
