#!/usr/bin/env bash
# Issue 15, microcontroller tier: insightface's MobileFaceNet pruned to 300,000 int8 bytes (about three
# quarters of its expansion, stem and head channels) and recovered by self-distillation, as an
# alternative to distilling the 152k-parameter MobileNetV2 micro student, which underfits the teacher
# (training loss = validation loss, benchmarks/face_models.md). Same machinery and faces as
# recipes/edgeface_face.sh; its own run folder so the 1 MB fit is untouched. Resumable: rerun the script.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=runs/mobilefacenet_micro
fit_teacher "$RUN" edgeface_face_micro 300000 float32,int8 --fit-step 0.1 --fit-rounds 9 --fit-threshold 0.25 \
  --fit-steps 300 --fit-final-steps 15000 --fit-final-lr 1e-3
select_face edgeface_face_micro_mfn models/edgeface_face_micro_int8.tflite "$RUN/models"/edgeface_face_micro_{int8,float32}.tflite
bench_out edgeface_face_micro_mfn "$RUN/models"/edgeface_face_micro_{float32,int8}.tflite
ship_note "$RUN/models" edgeface_face_micro
