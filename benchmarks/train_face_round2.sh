#!/usr/bin/env bash
# Round 2 of the shipped face models (benchmarks/face_models.md): build the label-free distillation
# sets, cache the teacher's embeddings of them, then train the main and the micro tier warm-started
# from round 1. Every step resumes: rerun the script after an interruption.
# Needs round 1's runs (runs/face_edge, runs/face_edge_micro) and cache/celeba/{arcface112,views8}.
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"

nice -n 5 "$EF" data morphs cache/celeba/arcface112 cache/distill/celeba_morphs --count 30000
nice -n 5 "$EF" data faces "$DATA/expressions/fer2013/train" cache/distill/fer2013_train --views 2
teacher_targets cache/distill distill

for run in face_edge_morphs face_edge_micro_morphs; do
  train_run "$run"
done
