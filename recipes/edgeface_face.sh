#!/usr/bin/env bash
# Issue 14: import insightface's MobileFaceNet (ncnn) and fit it under 1,000,000 bytes as int8.
# Resumable: a finished import is reused, and `convert --fit` resumes from runs/mobilefacenet/fit/
# (each accepted pruning round and the final recovery's checkpoints). Wall times go to the log.
# Recovery faces: CelebA (train identities; LFW people excluded) + the cleaned real-face sets of
# issue 15 (benchmarks/data_sets.md rebuilds them into $CLEAN with their teacher targets).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/mobilefacenet
fit_teacher "$RUN" edgeface_face 1000000 float32,float16,int8 --fit-step 0.04 --fit-steps 200 --fit-final-steps 2000
select_face edgeface_face models/edgeface_face_int8.tflite "$RUN/models/edgeface_face_int8.tflite"
bench_out edgeface_face "$RUN/models"/edgeface_face_{float32,float16,int8}.tflite
ship_note "$RUN/models" edgeface_face
