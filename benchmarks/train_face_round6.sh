#!/usr/bin/env bash
# Round 6 (issue 15, benchmarks/face_models.md): the shipped MobileNetV2 and micro students,
# recovered from their .tflite files by `edgeface import`, distilled further on the 39,207 clean real
# faces (benchmarks/rebuild_data.sh) mixed with the 8 views of every CelebA face. Both runs go side by
# side on the two cores; every step resumes, so rerun the script after an interruption.
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"

"$EF" align "$DATA/faces/celeba" cache/celeba/arcface112 --workers 2  # resumes from its manifest
[ -f cache/celeba/views8/manifest.jsonl ] || "$EF" data views cache/celeba/arcface112 "$DATA/faces/celeba" cache/celeba/views8 --views 8
if [ ! -f cache/teacher/views8_shard1.npz ]; then
  for k in 0 1; do
    "$EF" teacher embed "$TEACHER" cache/celeba/views8 "cache/teacher/views8_shard$k.npz" --shard $k/2 &
  done
  wait
fi
old=(); [ -f "$STORE" ] && old=("$STORE")
"$EF" teacher merge "$STORE" "${old[@]}" cache/teacher/views8_shard0.npz cache/teacher/views8_shard1.npz
[ -d ../data/clean ] || DATA_OUT="$(cd .. && pwd)/data" bash benchmarks/rebuild_data.sh
[ -f runs/recovered/mnv2/model.keras ] || "$EF" import models/edgeface_face_mnv2_float32.tflite --out runs/recovered/mnv2
[ -f runs/recovered/micro/model.keras ] || "$EF" import models/edgeface_face_micro_int8.tflite --out runs/recovered/micro
train_run face_mnv2_real &
train_run face_micro_real
wait
