#!/usr/bin/env bash
# models/edgeface_face_micro_int8.tflite (+ TFLite Micro C array): the mobilenetv2_micro student
# (width 0.35, 152k parameters) distilled label-free from insightface's MobileFaceNet in four
# warm-started rounds (benchmarks/face_models.md: rounds 1, 2, micro round 3 and its continuation).
# About 1.5 h of training on 2 cores after the data.
#   make recipe NAME=edgeface_face_micro     (rerun to resume)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
celeba_views
train_run face_edge_micro
distill_round2
train_run face_edge_micro_morphs
morph_set celeba_morphs_s1 1 blend
train_run face_edge_micro_morphs2
train_run face_edge_micro_morphs3
OUT=runs/face_edge_micro_morphs3/models
step "convert (int8 + C array, 300,000-byte budget)"
"$EF" convert runs/face_edge_micro_morphs3 --out "$OUT" --name edgeface_face_micro --dtypes int8 --budget 300000 \
  --calib cache/celeba/arcface112 --c-array
bench_out edgeface_face_micro "$OUT"/edgeface_face_micro_int8.tflite
ship_note "$OUT" edgeface_face_micro
