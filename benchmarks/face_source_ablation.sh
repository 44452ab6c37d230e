#!/usr/bin/env bash
# Issue 15's per-source ablation (benchmarks/face_models.md, "Per-source ablation"): the shipped
# microcontroller student, recovered from its file, fine-tuned for the same 700 steps on the 8 CelebA
# views plus one real-face set at a time (then all three, then all three with the relational term at weight 10).
# Every arm: frozen BatchNorm, peak lr 3e-5 cosine to 1e-6 over the 700 steps, no warm-up, the 13
# held-out CelebA people as validation. Nothing here reads LFW. Resumable: rerun after an interruption.
#   bash benchmarks/face_source_ablation.sh             # all arms, then the table
#   bash benchmarks/face_source_ablation.sh views utk   # only these arms
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
OUT=runs/ablation
declare -A EXTRA=(
  [views]='[]'
  [utk]="[\"$CLEAN/utkface\"]"
  [aaf]="[\"$CLEAN/all_age_faces\"]"
  [scut]="[\"$CLEAN/scut_fbp5500\"]"
  [all]="[\"$CLEAN/utkface\", \"$CLEAN/all_age_faces\", \"$CLEAN/scut_fbp5500\"]"
  [all_rel]="[\"$CLEAN/utkface\", \"$CLEAN/all_age_faces\", \"$CLEAN/scut_fbp5500\"]"
)
ARMS=(views utk aaf scut all all_rel)
[ $# -gt 0 ] && ARMS=("$@")

[ -f runs/recovered/micro/model.keras ] || "$EF" import models/edgeface_face_micro_int8.tflite --out runs/recovered/micro
for arm in "${ARMS[@]}"; do
  [ -n "${EXTRA[$arm]:-}" ] || { echo "unknown arm $arm (one of: ${!EXTRA[*]})" >&2; exit 2; }
  run="$OUT/micro_$arm"
  run_done "$run" && continue
  resume=(); has_checkpoint "$run" && resume=(--resume)
  rel=0.0; [ "$arm" = all_rel ] && rel=10.0  # ~0.2 of loss at batch cos gaps of ~0.15: the size of the cosine term
  step "ablation arm $arm"
  nice -n 5 "$EF" train face --data cache/celeba/views8 --out "$run" --config recipes/configs/face_micro_real.toml \
    --set "data.extra=${EXTRA[$arm]}" --set train.freeze_bn=true --set optim.lr=3e-5 --set optim.min_lr=1e-6 \
    --set optim.warmup_epochs=0.0 --set loss.relational_weight=$rel --max-steps 700 "${resume[@]}"
done
"$PY" benchmarks/ablation_table.py "$OUT" --json benchmarks/results/face_ablation/micro_sources.json
