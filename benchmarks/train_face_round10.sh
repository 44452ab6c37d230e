#!/usr/bin/env bash
# Issue 15, round 10 (benchmarks/face_models.md, round 9's next step 1): the MobileNetV2 student shipped by round 9
# (commit 891e055), distilled for an 8-epoch cycle (12 at first; cut to 8 in session 18 so one session can finish and judge it) on the same mixture (recipes/lib.sh real_distill), peak lr 2e-4.
# About 2 h alone on 2 cores; resumable: rerun it. Then round 9's rule against round 9's file (no LFW before it):
#   bash benchmarks/round9_select.sh mnv2 runs/round10/mnv2 891e055
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
real_distill mnv2 "$(shipped_at 891e055 edgeface_face_mnv2_float32.tflite)" 2e-4 8 runs/round10/mnv2 runs/recovered/mnv2_r9
