"""Cross-dataset expression accuracy (issue 18): each shipped int8 classifier on every JAFFE photo,
through the deployed path (runtime MTCNN, the card's crop and preprocessing).

    .venv/bin/python benchmarks/expr_cross.py [--data ../shared/data/expressions/jaffe] \
        [--out benchmarks/results/expressions/cross]

Writes cross.json and one confusion PNG per model into --out, and prints a Markdown table.
"""
import argparse
import json
import time
from pathlib import Path

import edgeface  # noqa: F401
from edgeface.bench.classification import cross_dataset
from edgeface.utils.io import write_json_atomic

MODELS = ["models/edgeface_expr_fer_int8.tflite", "models/edgeface_expr_cnn_int8.tflite"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/expressions/jaffe"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/expressions/cross"))
    ap.add_argument("models", nargs="*", default=MODELS)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = [cross_dataset(m, a.data, out_dir=a.out) for m in a.models]
    write_json_atomic(a.out / "cross.json", {"data": str(a.data), "wall_s": round(time.time() - t0, 1), "results": rows})
    print("| model (trained on) | JAFFE photos scored | shared classes | accuracy | balanced | no face |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| `{Path(r['model']).name}` | {r['n']} | {len(r['shared_classes'])} of 7 "
              f"(unscored: {', '.join(r['unscored_classes']) or '-'}) | {100 * r['accuracy']:.1f}% | "
              f"{100 * r['balanced_accuracy']:.1f}% | {r['no_face']} |")


if __name__ == "__main__":
    main()
