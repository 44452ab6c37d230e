#!/usr/bin/env bash
# Issue 15, round 8 (benchmarks/face_models.md): the shipped micro student fine-tuned for 700 steps on the
# CelebA views + all three real-face sets with 8% of those faces held out (data.extra_val_fraction), at two
# peak learning rates; both validations logged: the 13 CelebA people and the held-out real faces. No LFW.
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
[ -f runs/recovered/micro/model.keras ] || "$EF" import models/edgeface_face_micro_int8.tflite --out runs/recovered/micro
ALL="[\"$CLEAN/utkface\", \"$CLEAN/all_age_faces\", \"$CLEAN/scut_fbp5500\"]"
for lr in 3e-5 3e-4; do
  run=runs/xval/micro_all_lr$lr
  run_done "$run" && continue
  resume=(); has_checkpoint "$run" && resume=(--resume)
  step "xval arm lr $lr"
  "$EF" train face --data cache/celeba/views8 --out "$run" --config recipes/configs/face_micro_real.toml \
    --set "data.extra=$ALL" --set data.extra_val_fraction=0.08 --set train.freeze_bn=true --set optim.lr=$lr \
    --set optim.min_lr=1e-6 --set optim.warmup_epochs=0.0 --set loss.relational_weight=10.0 --max-steps 700 "${resume[@]}"
done
"$PY" benchmarks/ablation_table.py runs/xval --json benchmarks/results/face_ablation/micro_extra_val.json
