"""The numbers in benchmarks/convert.md: what each conversion / compression does to bytes and quality.

    nice -n 10 python benchmarks/convert_bench.py classifier --run runs/expr/ck_cnn --out /tmp/convert_bench
    nice -n 10 python benchmarks/convert_bench.py face-sizes --out /tmp/convert_bench
    nice -n 10 python benchmarks/convert_bench.py face-sizes --per-tensor --out /tmp/convert_bench
    python benchmarks/convert_bench.py plot --run benchmarks/convert_ck_cnn.json --out benchmarks/convert.png

classifier: a trained expression run (labels give accuracy; everything is also compared with the
float Keras model). Fine-tunes use the run's *training* split only (no labels: self-distillation);
accuracy is on its test split. face-sizes: the file sizes of MobileNetV2 face embedders (sizes
depend on the architecture, not on training), calibrated on aligned CelebA training faces.
Writes OUT/*.json (copied to benchmarks/convert_*.json for the record).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401
from edgeface.utils.io import write_json_atomic


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def tflite_probs(path: Path, x: np.ndarray) -> np.ndarray:
    from edgeface.runtime.interpreter import TFLiteModel
    m = TFLiteModel(path)
    return np.concatenate([m.run(x[i:i + 64]) for i in range(0, len(x), 64)])


def classifier(args) -> dict:
    from edgeface.convert.source import load_source
    from edgeface.convert.tflite import convert_all
    from edgeface.data import expressions as xdata
    from edgeface.optimize.distill import predict
    from edgeface.optimize.distinctiveness import prune_dense_by_distinctiveness
    from edgeface.optimize.prune import kernel_sparsity, prune_finetune
    from edgeface.optimize.qat import qat_finetune
    from edgeface.optimize.structured import structured_prune

    src = load_source(args.run)
    info, model = src.run, src.model
    spec = info["data"]["split"]
    data = xdata.load_dataset(info["data"]["dir"], spec["kind"], spec["seed"], spec["val_fraction"],
                              spec["test_fraction"], spec["split_by"])
    size, ch = int(model.input_shape[1]), int(model.input_shape[3])
    clahe = bool(info["preprocessing"].get("clahe"))
    x_tr = xdata.normalize(xdata.load_images(data.splits["train"], size, ch, clahe, "train")[0])
    x_va, _ = xdata.load_images(data.splits["val"], size, ch, clahe, "val")
    x_te, y_te = xdata.load_images(data.splits["test"], size, ch, clahe, "test")
    x_va, x_te = xdata.normalize(x_va), xdata.normalize(x_te)
    ref = predict(model, x_te)
    out = Path(args.out) / Path(args.run).name
    rows = []

    def record(variant, m, dtypes, reps, note="", extra=None):
        t0 = time.time()
        cards, _ = convert_all(m, out, variant, dtypes, reps, card_extra=src.card_extra())
        for c in cards:
            p = out / c["file"]
            probs = tflite_probs(p, x_te)
            rows.append({"variant": variant, "dtype": c["dtype"], "bytes": c["bytes"], "gzip_bytes": gz(p),
                         "params": int(m.count_params()), "test_accuracy": float((probs.argmax(1) == y_te).mean()),
                         "agreement_with_float": float((probs.argmax(1) == ref.argmax(1)).mean()),
                         "note": note, **(extra or {})})
            print(json.dumps(rows[-1]), flush=True)
        rows[-1]["convert_s"] = round(time.time() - t0, 1)

    reps = x_tr[np.random.default_rng(0).permutation(len(x_tr))[:300]]
    float_acc = float((ref.argmax(1) == y_te).mean())
    print(f"float Keras test accuracy {float_acc:.4f} on {len(y_te)} images", flush=True)
    record("base", model, ["float32", "float16", "int8", "dynamic"], reps)

    steps = args.steps
    for sp in (0.5, 0.75):
        t0 = time.time()
        pruned = prune_finetune(model, x_tr, sp, steps)
        s = kernel_sparsity(pruned)["overall"]
        record(f"prune{int(sp * 100)}", pruned, ["float32", "int8"], reps,
               f"magnitude pruning to {sp:.0%}, {steps} distillation steps ({time.time() - t0:.0f} s)",
               {"kernel_sparsity": round(s, 4)})
        if sp == 0.5:
            pq = qat_finetune(pruned, x_tr, steps, preserve_sparsity=True)
            record("prune50_pqat", pq, ["int8"], None, f"pruning-preserving QAT, {steps} steps")
    t0 = time.time()
    qat = qat_finetune(model, x_tr, steps)
    record("qat", qat, ["int8"], None, f"QAT, {steps} distillation steps ({time.time() - t0:.0f} s)")

    hidden = args.hidden_layer
    if hidden:
        dp, rep = prune_dense_by_distinctiveness(model, hidden, x_tr[:2000])
        record("distinct", dp, ["float32", "int8"], reps,
               f"distinctiveness on {hidden}: {rep['units_before']} -> {rep['units_after']} units",
               {"merged": len(rep["merged"]), "removed_pairs": len(rep["removed_pairs"]), "dead": len(rep["dead"])})

    t0 = time.time()
    sp_model, srep = structured_prune(model, x_tr, x_va, step_fraction=0.1, max_rounds=args.rounds,
                                      finetune_steps=steps, pattern=args.structured_pattern)
    record("structured", sp_model, ["float32", "int8"], reps,
           f"L2 filter pruning, {sum(r['accepted'] for r in srep['rounds'][1:])} accepted rounds, "
           f"{steps} steps/round ({time.time() - t0:.0f} s)")
    result = {"run": str(args.run), "float_test_accuracy": float_acc, "test_images": int(len(y_te)),
              "train_images": int(len(x_tr)), "rows": rows, "structured_report": srep}
    write_json_atomic(Path(args.out) / f"convert_bench_{Path(args.run).name}.json", result)
    return result


def face_sizes(args) -> dict:
    from edgeface.data.calibration import load_calibration
    from edgeface.convert.micro import export_micro, parse_model
    from edgeface.convert.tflite import convert_all
    from edgeface.nets import get_model
    from edgeface.optimize.distill import recalibrate_batchnorm
    from edgeface.utils.paths import cache_dir

    faces, calib = load_calibration(args.calib or cache_dir() / "celeba" / "arcface112", (112, 112, 3), 300)
    rows = []
    for label, kw in (("a035_last1280", {}), ("a035_last512", {"last_channels": 512}),
                      ("a035_nolast", {"last_channels": 0}), ("a050_last512", {"alpha": 0.5, "last_channels": 512})):
        kw = {"input_size": 112, "alpha": 0.35, "embedding_dim": 128, **kw}
        model = get_model("mobilenetv2", **kw)
        recalibrate_batchnorm(model, faces[:64])
        out = Path(args.out) / "face"
        dtypes = ["int8"] if args.per_tensor else ["float32", "float16", "int8"]
        cards, _ = convert_all(model, out, label + ("_pt" if args.per_tensor else ""), dtypes, faces,
                               per_channel=not args.per_tensor)
        for c in cards:
            p = out / c["file"]
            m, _ = parse_model(p.read_bytes())
            g = m.subgraphs[0]
            qbytes = sum(len(t.quantization.scale) * 4 + len(t.quantization.zeroPoint) * 8 for t in g.tensors
                         if t.quantization is not None and t.quantization.scale is not None)
            row = {"model": label, "per_channel": not args.per_tensor, "kwargs": kw, "params": int(model.count_params()), "dtype": c["dtype"],
                   "bytes": c["bytes"], "gzip_bytes": gz(p), "quant_param_bytes": qbytes}
            if c["dtype"] == "int8":
                mi = export_micro(p)
                row.update({"arena_bytes": mi["arena_bytes"], "arena_method": mi["arena_method"]})
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"calibration": calib, "rows": rows}
    write_json_atomic(Path(args.out) / f"convert_bench_face_sizes{'_per_tensor' if args.per_tensor else ''}.json", result)
    return result


def plot(args) -> None:
    """benchmarks/convert.png: bytes (raw and gzip) of every classifier variant, accuracy on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(Path(args.run).read_text())
    rows = d["rows"]
    labels = [f"{r['variant']}\n{r['dtype']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 4.8))
    ax.bar(x - 0.2, [r["bytes"] / 1e3 for r in rows], 0.4, label="file (KB)")
    ax.bar(x + 0.2, [r["gzip_bytes"] / 1e3 for r in rows], 0.4, label="gzip -9 (KB)")
    for i, r in enumerate(rows):
        ax.text(i, r["bytes"] / 1e3 + 30, f"{r['test_accuracy']:.3f}", ha="center", fontsize=8)
    ax.axhline(1000, color="red", lw=0.8, ls="--", label="1 MB budget")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("KB")
    ax.set_title(f"{Path(d['run']).name}: size per variant (number on top: test accuracy, float Keras "
                 f"{d['float_test_accuracy']:.3f}, n={d['test_images']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["classifier", "face-sizes", "plot"])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calib", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hidden-layer", default="head_dense")
    ap.add_argument("--per-tensor", action="store_true", help="face-sizes: int8 with per-tensor weight scales only")
    ap.add_argument("--structured-pattern", default=None, help="regex of producer layers (default: every group)")
    args = ap.parse_args(argv)
    t0 = time.time()
    {"classifier": classifier, "face-sizes": face_sizes, "plot": plot}[args.what](args)
    print(f"wall {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
