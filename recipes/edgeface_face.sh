#!/usr/bin/env bash
# Issue 14: import insightface's MobileFaceNet (ncnn) and fit it under 1,000,000 bytes as int8.
# Resumable: a finished import is reused, and `convert --fit` resumes from runs/mobilefacenet/fit/
# (each accepted pruning round and the final recovery's checkpoints). Wall times go to the log.
# Recovery faces: CelebA (train identities; LFW people excluded) + the cleaned real-face sets of
# issue 15 (benchmarks/data_sets.md rebuilds them into $CLEAN with their teacher targets).
# The pruning rounds were chosen with the four-op PReLU split (session 5); the shipped int8 file
# is the same float model re-converted with the two-op residual form (session 10), so the recipe
# replays both: the fit with --fit-prelu-form split, then the re-conversion of its float32 file.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/mobilefacenet
fit_teacher "$RUN" edgeface_face 1000000 float32,float16,int8 --fit-step 0.04 --fit-steps 200 --fit-final-steps 2000 \
  --fit-prelu-form split
GRAPH=runs/face_1mb_graph
step "re-convert $RUN's float32 file with the two-op PReLU form ($GRAPH)"
[ -f "$GRAPH/model.keras" ] || "$EF" import "$RUN/models/edgeface_face_float32.tflite" --out "$GRAPH" --faces cache/celeba/arcface112
[ -f "$GRAPH/models/edgeface_face_int8.tflite" ] || "$EF" convert "$GRAPH" --out "$GRAPH/models" --name edgeface_face \
  --dtypes int8 --budget 1000000 --fit --calib cache/celeba/arcface112 --c-array
select_face edgeface_face models/edgeface_face_int8.tflite "$RUN/models/edgeface_face_int8.tflite" "$GRAPH/models/edgeface_face_int8.tflite"
bench_out edgeface_face "$RUN/models"/edgeface_face_{float32,float16}.tflite "$GRAPH/models/edgeface_face_int8.tflite"
ship_note "$RUN/models" edgeface_face
ship_note "$GRAPH/models" edgeface_face
