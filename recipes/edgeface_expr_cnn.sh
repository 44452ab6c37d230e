#!/usr/bin/env bash
# models/edgeface_expr_cnn_{float32,float16,int8}.tflite: the small expression CNN on CK+48 with the
# subject-disjoint split, its head pruned by distinctiveness (benchmarks/expressions.md). Minutes.
#   make recipe NAME=edgeface_expr_cnn
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/expr/ck_cnn_subject
OUT=$RUN/models
step "train $RUN (+ head pruning)"
[ -f "$RUN/pruned/model.keras" ] || nice -n 5 "$EF" train expression --data "$DATA/expressions/ckplus48" \
  --config edgeface/train/configs/expression_cnn.toml --split-by subject --prune-head --out "$RUN"
step "convert"
"$EF" convert "$RUN/pruned" --out "$OUT" --name edgeface_expr_cnn --dtypes float32,float16,int8
step "bench (the card's held-out subjects)"
mkdir -p benchmarks/results/recipes
"$EF" bench "$OUT"/edgeface_expr_cnn_{float32,float16,int8}.tflite --expr-data "$DATA/expressions/ckplus48" \
  --json benchmarks/results/recipes/edgeface_expr_cnn.json --markdown benchmarks/results/recipes/edgeface_expr_cnn.md
ship_note "$OUT" edgeface_expr_cnn
