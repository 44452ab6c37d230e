#!/usr/bin/env bash
# Round 2 of the shipped face models (benchmarks/face_models.md): build the label-free distillation
# sets, cache the teacher's embeddings of them, then train the main and the micro tier warm-started
# from round 1. Every step resumes: rerun the script after an interruption.
# Needs round 1's runs (runs/face_edge, runs/face_edge_micro) and cache/celeba/{arcface112,views8}.
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
PY="${PY:-.venv/bin/python}"
DATA="${EDGEFACE_DATA:-../shared/data}"
TEACHER=../shared/teachers/mobilefacenet-ncnn
STORE=cache/teacher_embeddings/insightface-mobilefacenet-ncnn_7a35d5328d61.npz

nice -n 5 "$PY" -m edgeface.data.distill_sets morphs cache/celeba/arcface112 cache/distill/celeba_morphs --count 30000
nice -n 5 "$PY" -m edgeface.data.distill_sets faces "$DATA/expressions/fer2013/train" cache/distill/fer2013_train --views 2
# Teacher targets on both cores (ncnn is fastest single-threaded), merged into the trainer's store.
for k in 0 1; do
  nice -n 5 "$PY" -m edgeface.teachers.base "$TEACHER" cache/distill cache/teacher/distill_shard$k.npz --shard $k/2 &
done
wait
"$PY" -m edgeface.teachers.base --merge "$STORE" "$STORE" cache/teacher/distill_shard0.npz cache/teacher/distill_shard1.npz

for run in face_edge_morphs face_edge_micro_morphs; do
  if [ -f "runs/$run/config.toml" ]; then resume=(--resume); else resume=(); fi
  nice -n 5 "$EF" train face --data cache/celeba/views8 --out "runs/$run" --config "$run" "${resume[@]}"
done
