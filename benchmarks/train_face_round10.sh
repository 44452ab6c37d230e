#!/usr/bin/env bash
# Issue 15, round 10 (benchmarks/face_models.md, round 9's next step 1): the MobileNetV2 student shipped by round 9
# (commit 891e055), distilled for a 12-epoch cycle on the same mixture (recipes/lib.sh real_distill), peak lr 2e-4.
# About 3 h alone on 2 cores; resumable: rerun it. Then round 9's rule against round 9's file (no LFW before it):
#   bash benchmarks/round9_select.sh mnv2 runs/round10/mnv2 891e055
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
real_distill mnv2 "$(shipped_at 891e055 edgeface_face_mnv2_float32.tflite)" 2e-4 12 runs/round10/mnv2 runs/recovered/mnv2_r9
