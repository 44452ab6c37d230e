"""Which test-time augmentation, chosen on a classifier's own validation split (issue 18): plain, flip,
and the ten-view TTA at several shifts, through the TFLite file and the card's preprocessing.

    .venv/bin/python benchmarks/expr_tta.py models/edgeface_expr_fer_int8.tflite /work/data/fer2013_full \
        [--split val] [--shifts 1,2,3,4] [--json benchmarks/results/expressions/tta_val.json] [--plot tta_val.png]

Prints a Markdown table; --plot draws the accuracies as bars. The test split is for the chosen setting only (`edgeface bench` reports it).
"""
import argparse
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401
from edgeface.bench.classification import load_split, run_batches
from edgeface.runtime import tta
from edgeface.utils.io import write_json_atomic
from edgeface.utils.plots import save_figure


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--shifts", default="1,2,3,4", help="Pixel shifts of the ten-view TTA to compare.")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    a = ap.parse_args()
    t0 = time.time()
    sp = load_split(a.model, a.data, a.split)
    predict = lambda x: run_batches(sp.model, x)  # noqa: E731
    rows = [("plain", None, tta.average(predict, sp.x, "none")), ("flip", None, tta.average(predict, sp.x, "flip"))]
    rows += [("ten", int(d), tta.average(predict, sp.x, "ten", shift=int(d))) for d in a.shifts.split(",")]
    results = [{"mode": m, "shift": d, "accuracy": float((p.argmax(1) == sp.y).mean())} for m, d, p in rows]
    print(f"{a.model.name} on the {a.split} split of {a.data} (n = {len(sp.y)}):\n")
    print("| TTA | shift (px) | accuracy |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['shift'] or '-'} | {100 * r['accuracy']:.2f}% |")
    if a.json:
        write_json_atomic(a.json, {"model": str(a.model), "data": str(a.data), "split": a.split, "n": len(sp.y),
                                   "wall_s": round(time.time() - t0, 1), "results": results})
    if a.plot:
        plot(results, f"{a.model.name}, {a.split} split (n = {len(sp.y)})", a.plot)


def plot(results: list[dict], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["mode"] + (f"\n{r['shift']} px" if r["shift"] else "") for r in results]
    acc = [100 * r["accuracy"] for r in results]
    fig, ax = plt.subplots(figsize=(1.2 * len(results) + 1, 3.2))
    bars = ax.bar(labels, acc, color=["#999999" if r["mode"] != "ten" else "#3b7dd8" for r in results])
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylim(min(acc) - 1.5, max(acc) + 1.0)
    ax.set_ylabel("accuracy % (zoomed axis)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
