#!/usr/bin/env bash
# Issue 15, round 11 (benchmarks/face_models.md): a student grown at 28x28 and 14x14 (edgeface.nets.grow keeps its
# function; recipes/configs/face_TIER_grown_real.toml) and distilled with round 9's recipe. Its int8 file takes one
# scale per weight tensor: per channel it would not fit the tier's budget.
#   mnv2:  6 epochs at peak lr 3e-4
#   micro: 4 epochs at peak lr 2e-4
# BASE: the commit whose file of that tier is grown (the one shipped after round 10's verdict). Resumable: rerun
# it. No LFW here; judge it by round 9's rule against BASE's file:
#   bash benchmarks/round9_select.sh TIER runs/round11/TIER BASE --per-tensor
# Usage: bash benchmarks/train_face_round11.sh mnv2|micro BASE_COMMIT
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
tier=${1:?usage: train_face_round11.sh mnv2|micro BASE_COMMIT} base=${2:?usage: train_face_round11.sh mnv2|micro BASE_COMMIT}
case $tier in
  mnv2) file=edgeface_face_mnv2_float32.tflite lr=3e-4 epochs=6 ;;
  micro) file=edgeface_face_micro_int8.tflite lr=2e-4 epochs=4 ;;
  *) echo "unknown tier $tier (mnv2|micro)" >&2; exit 2 ;;
esac
config=recipes/configs/face_${tier}_grown_real.toml
shipped=$(shipped_at "$base" $file)
grown=runs/grown/${tier}_$base
grow_student "$shipped" runs/recovered/${tier}_$base "$grown" "$config"
real_distill "$tier" "$shipped" "$lr" "$epochs" runs/round11/$tier "$grown" "$config"
