#!/usr/bin/env bash
# Issue 14: import insightface's MobileFaceNet (ncnn) and fit it under 1,000,000 bytes as int8.
# Resumable at the step level: a finished import is reused. Wall times go to the log.
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
DATA="${EDGEFACE_DATA:-../shared/data}"
RUN=runs/mobilefacenet
[ -f cache/celeba/arcface112/manifest.jsonl ] || "$EF" align "$DATA/faces/celeba" cache/celeba/arcface112 --workers 2
[ -f "$RUN/model.keras" ] || /usr/bin/time -f "import: %e s" "$EF" import ../shared/teachers/mobilefacenet-ncnn --out "$RUN" --faces cache/celeba/arcface112
/usr/bin/time -f "convert: %e s" "$EF" convert "$RUN" --out "$RUN/models" --name edgeface_face --budget 1000000 --fit-step 0.05 --fit-steps 100 --fit-images 2000 --c-array
