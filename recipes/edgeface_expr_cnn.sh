#!/usr/bin/env bash
# models/edgeface_expr_cnn_{float32,float16,int8}.tflite: the small expression CNN on CK+48 with the
# subject-disjoint split, its head pruned by distinctiveness (benchmarks/expressions.md). Minutes.
#   make recipe NAME=edgeface_expr_cnn
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/expr/ck_cnn_subject
step "train $RUN (+ head pruning)"
[ -f "$RUN/pruned/model.keras" ] || nice -n 5 "$EF" train expression --data "$DATA/expressions/ckplus48" \
  --config edgeface/train/configs/expression_cnn.toml --split-by subject --prune-head --out "$RUN"
convert_bench_expression "$RUN/pruned" edgeface_expr_cnn "$DATA/expressions/ckplus48"
