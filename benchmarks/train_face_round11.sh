#!/usr/bin/env bash
# Issue 15, round 11 (benchmarks/face_models.md): the MobileNetV2 student grown at 28x28 and 14x14
# (recipes/configs/face_mnv2_grown_real.toml; edgeface.nets.grow keeps its function) and distilled with
# round 9's recipe, 6 epochs at peak lr 3e-4: the new channels and blocks start from copies and zeros.
# BASE: the commit whose models/edgeface_face_mnv2_float32.tflite is grown (the file shipped after round 10's
# verdict). Resumable: rerun it. No LFW here; judge it by round 9's rule against BASE's file, converted with one
# int8 scale per weight tensor (per channel it would not fit 1,000,000 bytes):
#   bash benchmarks/round9_select.sh mnv2 runs/round11/mnv2 BASE --per-tensor
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
base=${1:?usage: train_face_round11.sh BASE_COMMIT}
config=recipes/configs/face_mnv2_grown_real.toml
shipped=$(shipped_at "$base" edgeface_face_mnv2_float32.tflite)
rec=runs/recovered/mnv2_$base grown=runs/grown/mnv2_$base
[ -f "$rec/model.keras" ] || "$EF" import "$shipped" --out "$rec"
step "grow $rec -> $grown ($config)"
[ -f "$grown/model.keras" ] || "$PY" benchmarks/grow_student.py "$rec/model.keras" --config "$config" \
  --calib "$(calib_train_people)" --per-tensor --teacher "$TEACHER" --out "$grown"
real_distill mnv2 "$shipped" 3e-4 6 runs/round11/mnv2 "$grown" "$config"
