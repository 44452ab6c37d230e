#!/usr/bin/env bash
# Round 3 of the 1 MB tier (benchmarks/face_models.md): two more label-free sets, 60k global-blend
# morphs (seed 1) and 60k part-swap morphs (seed 2), teacher targets cached, then round 2's run
# continued on everything. Every step resumes: rerun the script after an interruption.
# Needs round 2's sets and run (benchmarks/train_face_round2.sh) and cache/celeba/{arcface112,views8}.
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"

morph_set celeba_morphs_s1 1 blend
morph_set celeba_parts_s2 2 parts
train_run face_edge_morphs2

# The microcontroller tier, round 5: round 4's micro run continued on the same data.
train_run face_edge_micro_parts
