#!/usr/bin/env bash
# Issue 15, round 12 (benchmarks/face_models.md): the grown micro student that round 11 shipped, distilled further
# on the same mixture (round 10's continuation, repeated: 3 epochs at peak lr 1e-4, about 35 min alone on 2 cores).
# BASE: the commit that shipped round 11's micro file. Resumable: rerun it. No LFW here; judge it by round 9's
# rule against BASE's file:  bash benchmarks/round9_select.sh micro runs/round12/micro BASE --per-tensor
# Usage: bash benchmarks/train_face_round12.sh BASE_COMMIT
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
base=${1:?usage: train_face_round12.sh BASE_COMMIT}
real_distill micro "$(shipped_at "$base" edgeface_face_micro_int8.tflite)" 1e-4 3 runs/round12/micro \
  runs/recovered/micro_$base recipes/configs/face_micro_grown_real.toml
