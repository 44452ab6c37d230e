#!/usr/bin/env bash
# Round 5 of the 1 MB tier (benchmarks/face_models.md): two more label-free sets, 60k part swaps
# (seed 4) and 60k three-band morphs (seed 5), teacher targets cached, then round 4's best model
# continued on everything (config face_edge_morphs4.toml). Every step resumes: rerun the script
# after an interruption. Needs round 4's sets and run (benchmarks/train_face_round4.sh).
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"

morph_set celeba_parts_s4 4 parts
morph_set celeba_bands_s5 5 bands
train_run face_edge_morphs4
