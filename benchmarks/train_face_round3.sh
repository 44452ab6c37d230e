#!/usr/bin/env bash
# Round 3 of the 1 MB tier (benchmarks/face_models.md): two more label-free sets, 60k global-blend
# morphs (seed 1) and 60k part-swap morphs (seed 2), teacher targets cached, then round 2's run
# continued on everything. Every step resumes: rerun the script after an interruption.
# Needs round 2's sets and run (benchmarks/train_face_round2.sh) and cache/celeba/{arcface112,views8}.
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
PY="${PY:-.venv/bin/python}"
TEACHER=../shared/teachers/mobilefacenet-ncnn
STORE=cache/teacher_embeddings/insightface-mobilefacenet-ncnn_7a35d5328d61.npz
RUN=face_edge_morphs2

morph_set() {  # NAME SEED MODE: the set, then the teacher's targets for it (both cores), merged into the store
  local name=$1 seed=$2 mode=$3
  nice -n 5 "$PY" -m edgeface.data.distill_sets morphs cache/celeba/arcface112 "cache/distill/$name" \
    --count 60000 --seed "$seed" --mode "$mode"
  for k in 0 1; do
    nice -n 5 "$PY" -m edgeface.teachers.base "$TEACHER" "cache/distill/$name" "cache/teacher/${name}_shard$k.npz" --shard $k/2 &
  done
  wait
  "$PY" -m edgeface.teachers.base --merge "$STORE" "$STORE" "cache/teacher/${name}_shard0.npz" "cache/teacher/${name}_shard1.npz"
}
morph_set celeba_morphs_s1 1 blend
morph_set celeba_parts_s2 2 parts

if [ -f "runs/$RUN/config.toml" ]; then resume=(--resume); else resume=(); fi
nice -n 5 "$EF" train face --data cache/celeba/views8 --out "runs/$RUN" --config "$RUN" "${resume[@]}"

# The microcontroller tier, round 5: round 4's micro run continued on the same data.
MICRO=face_edge_micro_parts
if [ -f "runs/$MICRO/config.toml" ]; then resume=(--resume); else resume=(); fi
nice -n 5 "$EF" train face --data cache/celeba/views8 --out "runs/$MICRO" --config face_edge_micro_morphs3 "${resume[@]}"
