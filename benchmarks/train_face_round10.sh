#!/usr/bin/env bash
# Issue 15, round 10 (benchmarks/face_models.md): round 9's shipped students (commit 891e055) distilled further on
# the same mixture (recipes/lib.sh real_distill). Resumable: rerun it. No LFW here; each run is judged by round 9's
# rule against round 9's file:  bash benchmarks/round9_select.sh TIER runs/round10/TIER 891e055
#   mnv2:  an 8-epoch cycle at peak lr 2e-4 (12 at first; cut to 8 in session 18 so one session finishes and
#          judges it), about 2 h alone on 2 cores
#   micro: 3 more epochs at peak lr 1e-4 (round 9's 1e-4 run, continued), about 35 min alone
# Usage: bash benchmarks/train_face_round10.sh [mnv2|micro]
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
case ${1:-mnv2} in
  mnv2) real_distill mnv2 "$(shipped_at 891e055 edgeface_face_mnv2_float32.tflite)" 2e-4 8 runs/round10/mnv2 runs/recovered/mnv2_r9 ;;
  micro) real_distill micro "$(shipped_at 891e055 edgeface_face_micro_int8.tflite)" 1e-4 3 runs/round10/micro runs/recovered/micro_r9 ;;
  *) echo "unknown tier $1 (mnv2|micro)" >&2; exit 2 ;;
esac
