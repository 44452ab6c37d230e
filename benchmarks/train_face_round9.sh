#!/usr/bin/env bash
# Issue 15, round 9 (benchmarks/face_models.md): both students, recovered from their shipped files, distilled for
# whole epochs on the CelebA views + the three real-face sets, 8% of those faces held out; the epoch is kept by the
# mean of the two validation cosines (data.select = teacher_cos_both). Resumable: rerun it. No LFW here.
# Usage: bash benchmarks/train_face_round9.sh mnv2|micro [PEAK_LR EPOCHS]  (other than 3e-4, 4: runs/round9/TIER_lrLR_eEPOCHS)
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
tier=${1:?usage: train_face_round9.sh mnv2|micro}
case $tier in
  mnv2) src=models/edgeface_face_mnv2_float32.tflite ;;
  micro) src=models/edgeface_face_micro_int8.tflite ;;
  *) echo "unknown tier $tier (mnv2|micro)" >&2; exit 2 ;;
esac
lr=${2:-3e-4} epochs=${3:-4}
run=runs/round9/$tier
[ "$lr/$epochs" = 3e-4/4 ] || run=runs/round9/${tier}_lr${lr}_e$epochs
real_faces
[ -f "runs/recovered/$tier/model.keras" ] || "$EF" import "$src" --out "runs/recovered/$tier"
run_done "$run" && exit 0
resume=(); [ -f "$run/config.toml" ] && resume=(--resume)
step "round 9: $tier, $epochs epochs, peak lr $lr -> $run"
ALL="[\"$CLEAN/utkface\", \"$CLEAN/all_age_faces\", \"$CLEAN/scut_fbp5500\"]"
nice -n 5 "$EF" train face --data cache/celeba/views8 --out "$run" --config "recipes/configs/face_${tier}_real.toml" \
  --set "data.extra=$ALL" --set data.extra_val_fraction=0.08 --set data.select=teacher_cos_both \
  --set train.freeze_bn=true --set optim.lr=$lr --set optim.min_lr=1e-6 --set optim.warmup_epochs=0.0 \
  --set loss.relational_weight=10.0 --epochs "$epochs" "${resume[@]}"
