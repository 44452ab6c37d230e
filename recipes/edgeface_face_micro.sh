#!/usr/bin/env bash
# models/edgeface_face_micro_int8.tflite (+ TFLite Micro C array): the mobilenetv2_micro student
# (width 0.35, 152k parameters) distilled label-free from insightface's MobileFaceNet in four
# warm-started rounds (benchmarks/face_models.md: rounds 1, 2, micro round 3 and its continuation), then
# two epochs on the CelebA views + 36k real faces of other people (round 9) and three more (round 10), then
# grown at 28x28 and 14x14 (227k parameters, one int8 scale per weight tensor) and distilled 4 epochs on that
# mixture (round 11), each chosen by round 9's rule. About 3.3 h of training on 2 cores after the data.
#   make recipe NAME=edgeface_face_micro     (rerun to resume)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
celeba_views
train_run face_edge_micro
distill_round2
train_run face_edge_micro_morphs
morph_set celeba_morphs_s1 1 blend
train_run face_edge_micro_morphs2
train_run face_edge_micro_morphs3
convert_student micro runs/face_edge_micro_morphs3 cache/celeba/arcface112  # round 4: round 9's warm start
real_distill micro runs/face_edge_micro_morphs3/models/edgeface_face_micro_int8.tflite 1e-4 2 runs/face_micro_real_r9
convert_student micro runs/face_micro_real_r9 "$(calib_train_people)"
real_distill micro runs/face_micro_real_r9/models/edgeface_face_micro_int8.tflite 1e-4 3 runs/face_micro_real_r10 \
  runs/recovered/micro_recipe_r10  # round 10: its own recovered folder (round 9's is runs/recovered/micro)
convert_student micro runs/face_micro_real_r10 "$(calib_train_people)"
R10=runs/face_micro_real_r10/models/edgeface_face_micro_int8.tflite GROWN=recipes/configs/face_micro_grown_real.toml
grow_student "$R10" runs/recovered/micro_recipe_r11 runs/grown/micro_recipe_r11 "$GROWN"  # round 11
real_distill micro "$R10" 2e-4 4 runs/face_micro_real_r11 runs/grown/micro_recipe_r11 "$GROWN"
convert_student micro runs/face_micro_real_r11 "$(calib_train_people)" --per-tensor
OUT=runs/face_micro_real_r11/models
bench_out edgeface_face_micro "$OUT"/edgeface_face_micro_int8.tflite
ship_note "$OUT" edgeface_face_micro
