#!/usr/bin/env bash
# Issue 15, round 9 (benchmarks/face_models.md): both students, recovered from their round-4 files (the shipped
# ones at commit fe9d94c), distilled for whole epochs on the CelebA views + the three real-face sets, 8% of those
# faces held out; the epoch is kept by the mean of the two validation cosines (recipes/lib.sh real_distill).
# Resumable: rerun it. No LFW here.
# Usage: bash benchmarks/train_face_round9.sh mnv2|micro [PEAK_LR EPOCHS]  (other than 3e-4, 4: runs/round9/TIER_lrLR_eEPOCHS)
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
tier=${1:?usage: train_face_round9.sh mnv2|micro}
case $tier in
  mnv2) file=edgeface_face_mnv2_float32.tflite ;;
  micro) file=edgeface_face_micro_int8.tflite ;;
  *) echo "unknown tier $tier (mnv2|micro)" >&2; exit 2 ;;
esac
lr=${2:-3e-4} epochs=${3:-4}
run=runs/round9/$tier
[ "$lr/$epochs" = 3e-4/4 ] || run=runs/round9/${tier}_lr${lr}_e$epochs
real_distill "$tier" "$(shipped_at fe9d94c $file)" "$lr" "$epochs" "$run"  # round 4's file, whatever models/ holds now
