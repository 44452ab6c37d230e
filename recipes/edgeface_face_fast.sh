#!/usr/bin/env bash
# Candidate for edgeface_face (issue 14's 2x speed): insightface's MobileFaceNet pruned to a speed budget
# as well as the byte budget. Channels go by importance per unit of estimated int8 time (--fit-rank time:
# the 56x56 and 28x28 layers first) until the estimate is at most 0.6 of the unpruned network's, 3% of the
# channels per round with 300 recovery steps, then an 8,000-step final recovery. Resumable (RUN/fit).
# Shipping rule (benchmarks/compression.md, session 12), decided before the run: on the 51 held-out CelebA
# people, pair accuracy >= 97.42% and cosine to the teacher >= 0.955, and >= 2x the ncnn teacher side by side.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/mobilefacenet_fast
fit_teacher "$RUN" edgeface_face 1000000 float32,float16,int8 --fit-rank time --fit-max-cost 0.6 \
  --fit-step 0.03 --fit-steps 300 --fit-rounds 14 --fit-final-steps 8000 --fit-final-lr 2e-4
select_face edgeface_face_fast models/edgeface_face_int8.tflite "$RUN/models"/edgeface_face_{int8,float32}.tflite
step "latency side by side with the ncnn teacher (1 thread)"
"$PY" benchmarks/latency_side_by_side.py models/edgeface_face_int8.tflite "$RUN/models/edgeface_face_int8.tflite" \
  --teacher "$TEACHER" --json benchmarks/results/recipes/edgeface_face_fast_latency.json
ship_note "$RUN/models" edgeface_face
