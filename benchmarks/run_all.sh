#!/usr/bin/env bash
# `make bench`: the full benchmark report, one command per line, in order. Results go to benchmarks/results/.
# Needs the shared data (EDGEFACE_DATA or ../shared/data). Runs under nice: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
DATA="${EDGEFACE_DATA:-../shared/data}"
OUT=benchmarks/results
mkdir -p "$OUT"

# LFW: the raw tree, exactly as the README's command; the bench aligns the images the pairs name once
# into cache/aligned/ and reuses them.
LFW="$DATA/lfw/lfw-deepfunneled"

# 1. Shipped models: size, gzip, params, budget, latency (1 and 2 threads), end-to-end, LFW View 2, agreement
#    between dtypes; expression classifiers on their dataset. Records the LFW threshold in each card.
#    Expression models take the --expr-data folder their card names: edgeface_expr_cnn_* -> ckplus48,
#    edgeface_expr_fer_* (trained on the full FER2013 Training split, issue 18) -> fer2013, whose test/
#    is PublicTest (3,589). The glob below includes them; a missing one fails the command.
for f in models/edgeface_expr_fer_{float32,float16,int8}.tflite; do test -f "$f" || { echo "missing $f" >&2; exit 1; }; done
nice -n 10 "$EF" bench models/*.tflite --lfw "$LFW" --pairs "$DATA/lfw/pairs.txt" \
  --expr-data "$DATA/expressions/ckplus48" --expr-data "$DATA/expressions/fer2013" --expr-data "$DATA/expressions/jaffe" \
  --teacher-latency ../shared/teachers/mobilefacenet-ncnn \
  --json "$OUT/bench.json" --markdown "$OUT/bench.md" --plots "$OUT" --update-cards

# 2. The README's "Shipped models" table, from the results just written.
.venv/bin/python benchmarks/readme_table.py "$OUT/bench.json" README.md
