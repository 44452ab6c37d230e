#!/usr/bin/env bash
# models/edgeface_face_mnv2_{float32,float16,int8}.tflite: the MobileNetV2 student (width 0.75, GDConv
# head, 128-d) distilled label-free from insightface's MobileFaceNet in four warm-started rounds, each
# adding distinct faces (benchmarks/face_models.md, rounds 1-4), then 4 epochs with 36k real faces of other
# people (round 9). About 7.5 h of training on 2 cores.
#   make recipe NAME=edgeface_face_mnv2      (rerun to resume)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
celeba_views                                   # round 1: 8 views of 246 CelebA people
train_run face_edge
distill_round2                                 # round 2: + 30k blends, FER2013 faces
train_run face_edge_morphs
morph_set celeba_morphs_s1 1 blend             # round 3: + 60k blends, 60k part swaps
morph_set celeba_parts_s2 2 parts
train_run face_edge_morphs2
morph_set celeba_parts_s3 3 parts              # round 4: + 60k part swaps (shipped: best CelebA validation)
train_run face_edge_morphs3
convert_student mnv2 runs/face_edge_morphs3 cache/celeba/arcface112  # round 4: round 9's warm start
real_distill mnv2 runs/face_edge_morphs3/models/edgeface_face_mnv2_float32.tflite 3e-4 4 runs/face_mnv2_real_r9
convert_student mnv2 runs/face_mnv2_real_r9 "$(calib_train_people)"
OUT=runs/face_mnv2_real_r9/models
bench_out edgeface_face_mnv2 "$OUT"/edgeface_face_mnv2_{float32,float16,int8}.tflite
ship_note "$OUT" edgeface_face_mnv2
