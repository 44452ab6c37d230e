#!/usr/bin/env bash
# Issue 14: import insightface's MobileFaceNet (ncnn) and fit it under 1,000,000 bytes as int8.
# Resumable: a finished import is reused, and `convert --fit` resumes from runs/mobilefacenet/fit/
# (each accepted pruning round and the final recovery's checkpoints). Wall times go to the log.
# Recovery faces: CelebA (train identities; LFW people excluded) + the cleaned real-face sets of
# issue 15 (benchmarks/data_sets.md rebuilds them into $CLEAN with their teacher targets).
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
DATA="${EDGEFACE_DATA:-../shared/data}"
CLEAN="${EDGEFACE_CLEAN:-/work/data/clean}"
TEACHER=../shared/teachers/mobilefacenet-ncnn
RUN=runs/mobilefacenet
[ -f cache/celeba/arcface112/manifest.jsonl ] || "$EF" align "$DATA/faces/celeba" cache/celeba/arcface112 --workers 2
[ -f "$RUN/model.keras" ] || /usr/bin/time -f "import: %e s" "$EF" import "$TEACHER" --out "$RUN" --faces cache/celeba/arcface112
/usr/bin/time -f "convert: %e s" "$EF" convert "$RUN" --out "$RUN/models" --name edgeface_face --budget 1000000 \
    --calib cache/celeba/arcface112 --fit-images 5000 \
    --fit-faces "$CLEAN/utkface" --fit-faces "$CLEAN/all_age_faces" --fit-faces "$CLEAN/scut_fbp5500" \
    --fit-teacher "$TEACHER" --fit-step 0.04 --fit-steps 200 --fit-final-steps 2000 --c-array
