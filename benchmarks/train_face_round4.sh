#!/usr/bin/env bash
# Round 4 of the 1 MB tier (benchmarks/face_models.md): a third label-free set, 60k part swaps
# (seed 3), teacher targets cached, then round 3's best model continued on everything for 4 epochs
# (config face_edge_morphs3.toml). Every step resumes: rerun the script after an interruption.
# Needs round 3's sets and run (benchmarks/train_face_round3.sh) and cache/celeba/{arcface112,views8}.
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"

morph_set celeba_parts_s3 3 parts
train_run face_edge_morphs3
