"""TF-free TFLite MTCNN vs the mtcnn package (TensorFlow) on LFW: agreement, landmark error, speed.

    python -m edgeface.runtime.compare_detectors [--n 500] [--out benchmarks/runtime_detectors.json]

Needs TensorFlow + mtcnn (a workstation check). Images: every k-th file of the sorted LFW list,
so the sample spreads over identities. Faces of the two detectors are paired by IoU >= 0.5;
landmark error is measured on pairs, in pixels and divided by the TF inter-ocular distance.
Both run single-threaded by default so the per-image times compare like for like.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from edgeface.errors import EdgefaceError


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def pair_faces(ref: list, test: list, min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairing by IoU, best first."""
    cands = sorted(((box_iou(r.box, t.box), i, j) for i, r in enumerate(ref) for j, t in enumerate(test)), reverse=True)
    used_r, used_t, pairs = set(), set(), []
    for iou, i, j in cands:
        if iou >= min_iou and i not in used_r and j not in used_t:
            used_r.add(i)
            used_t.add(j)
            pairs.append((i, j, iou))
    return pairs


def sample_lfw(lfw: Path, n: int) -> list[Path]:
    files = sorted(lfw.glob("*/*.jpg"))
    if not files:
        raise EdgefaceError(f"no LFW images under {lfw}")
    step = max(1, len(files) // n)
    return files[::step][:n]


def plot(result: dict, errors: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].hist(errors * 100, bins=40, color="#3b7dd8")
    ax[0].set_xlabel("landmark error, % of inter-ocular distance (per point)")
    ax[0].set_ylabel("points")
    ax[0].set_title(f"TFLite vs TF MTCNN on {result['images']} LFW images")
    t = result["time_ms"]
    names = ["TF mtcnn", "TFLite (edgeface)"]
    vals = [t["tf_median"], t["tflite_median"]]
    ax[1].barh(names, vals, color=["#999999", "#3b7dd8"])
    for i, v in enumerate(vals):
        ax[1].text(v, i, f" {v:.1f} ms", va="center")
    ax[1].set_xlabel("median wall ms per image (1 thread, shared machine)")
    ax[1].set_xlim(0, max(vals) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--lfw", type=click.Path(path_type=Path), default=None, help="LFW folder [default: shared data].")
@click.option("--n", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--assets", type=click.Path(path_type=Path), default=None, help="Other detector .tflite folder.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads for both detectors.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/runtime_detectors.json"), show_default=True)
def main(lfw, n, assets, threads, out):
    """Compare the TFLite detector with the TF mtcnn package on LFW images."""
    import edgeface  # noqa: F401
    import tensorflow as tf

    from edgeface.align.detect import MTCNNDetector
    from edgeface.align.faces import pick_main_face
    from edgeface.runtime.detector import Detector
    from edgeface.utils.images import read_image
    from edgeface.utils.io import write_json_atomic
    from edgeface.utils.paths import shared_data
    from edgeface.utils.progress import progress

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if lfw is None:
        root = shared_data()
        if root is None:
            raise EdgefaceError("shared data not found: pass --lfw DIR")
        lfw = root / "lfw" / "lfw-deepfunneled"
    files = sample_lfw(lfw, n)
    ref_det, test_det = MTCNNDetector(), Detector(num_threads=threads, assets=assets)
    # Warm both up (graph tracing, interpreter allocation) outside the timed loop.
    warm = read_image(files[0])
    ref_det.detect(warm)
    test_det.detect(warm)

    c_ref, c_test = [], []  # process CPU ms: what an idle core would take (the machine is shared)
    t_ref, t_test, errs_px, errs_iod, ious, score_diff = [], [], [], [], [], []
    n_ref = n_test = n_pairs = ref_found = test_found = main_agree = both_found = 0
    for f in progress(files, total=len(files), desc="compare", unit="img"):
        rgb = read_image(f)
        t0, c0 = time.perf_counter(), time.process_time()
        ref = ref_det.detect(rgb)
        t1, c1 = time.perf_counter(), time.process_time()
        test = test_det.detect(rgb)
        t2, c2 = time.perf_counter(), time.process_time()
        t_ref.append((t1 - t0) * 1000)
        t_test.append((t2 - t1) * 1000)
        c_ref.append((c1 - c0) * 1000)
        c_test.append((c2 - c1) * 1000)
        n_ref += len(ref)
        n_test += len(test)
        ref_found += bool(ref)
        test_found += bool(test)
        for i, j, iou in pair_faces(ref, test):
            n_pairs += 1
            ious.append(iou)
            score_diff.append(abs(ref[i].score - test[j].score))
            d = np.linalg.norm(ref[i].landmarks - test[j].landmarks, axis=1)
            iod = float(np.linalg.norm(ref[i].landmarks[0] - ref[i].landmarks[1]))
            errs_px.extend(d.tolist())
            errs_iod.extend((d / max(iod, 1e-6)).tolist())
        if ref and test:
            both_found += 1
            a, b = pick_main_face(ref, rgb.shape), pick_main_face(test, rgb.shape)
            main_agree += box_iou(a.box, b.box) >= 0.5
    px, iod = np.asarray(errs_px), np.asarray(errs_iod)
    result = {
        "command": "python -m " + " ".join(["edgeface.runtime.compare_detectors", *sys.argv[1:]]),
        "images": len(files), "lfw": str(lfw), "threads": threads,
        "detector_assets": str(assets or "edgeface/runtime/assets (shipped)"),
        "faces": {"tf": n_ref, "tflite": n_test, "paired_iou50": n_pairs,
                  "recall_vs_tf": n_pairs / max(n_ref, 1), "precision_vs_tf": n_pairs / max(n_test, 1),
                  "images_with_face_tf": ref_found, "images_with_face_tflite": test_found,
                  "main_face_agreement": main_agree / max(both_found, 1), "mean_iou": float(np.mean(ious)) if ious else None,
                  "max_score_diff": float(np.max(score_diff)) if score_diff else None},
        "landmark_error": {"mean_px": float(px.mean()) if len(px) else None, "median_px": float(np.median(px)) if len(px) else None,
                           "p99_px": float(np.percentile(px, 99)) if len(px) else None, "max_px": float(px.max()) if len(px) else None,
                           "mean_iod": float(iod.mean()) if len(iod) else None, "max_iod": float(iod.max()) if len(iod) else None},
        "time_ms": {"tf_median": float(np.median(t_ref)), "tf_mean": float(np.mean(t_ref)),
                    "tflite_median": float(np.median(t_test)), "tflite_mean": float(np.mean(t_test)),
                    "tf_cpu_median": float(np.median(c_ref)), "tflite_cpu_median": float(np.median(c_test))},
        "load_average_1min_end": round(os.getloadavg()[0], 2),
    }
    write_json_atomic(out, result)
    png = out.with_suffix(".png")
    plot(result, iod, png)
    fc, le, tm = result["faces"], result["landmark_error"], result["time_ms"]
    click.echo(f"{len(files)} images: faces tf {fc['tf']} / tflite {fc['tflite']}, paired {fc['paired_iou50']} "
               f"(recall {fc['recall_vs_tf']:.4f}, precision {fc['precision_vs_tf']:.4f}, main-face agreement "
               f"{fc['main_face_agreement']:.4f}); landmarks mean {le['mean_px']:.3f} px / {le['mean_iod']:.5f} IOD, "
               f"max {le['max_px']:.2f} px; median ms tf {tm['tf_median']:.1f} vs tflite {tm['tflite_median']:.1f} "
               f"(CPU ms {tm['tf_cpu_median']:.1f} vs {tm['tflite_cpu_median']:.1f}); "
               f"wrote {out} and {png}")


if __name__ == "__main__":
    sys.exit(main())
