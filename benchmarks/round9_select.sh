#!/usr/bin/env bash
# Issue 15, round 9 (benchmarks/face_models.md): convert the round-9 students (calibration: CelebA crops of their
# training people only) and measure what the shipping rule fixed before the runs reads, beside round 4's (shipped until round 9):
# cosine to the teacher on the held-out real faces and the 13 CelebA people, and pair accuracy on those people.
# No LFW here. Usage: bash benchmarks/round9_select.sh mnv2|micro [RUN_DIR [BASE_COMMIT [CONVERT FLAGS...]]]
# (default runs/round9/TIER, and round 4's files, fe9d94c; a later round passes the commit that shipped what it
# must beat, and the convert flags its students ship with, e.g. --per-tensor)
set -euo pipefail
source "$(dirname "$0")/../recipes/lib.sh"
tier=${1:?usage: round9_select.sh mnv2|micro}
run=${2:-runs/round9/$tier}
OUT=$run/models RES=benchmarks/results/face_$(basename "$(dirname "$run")")/$(basename "$run")  # runs/round9/X: face_round9/X
run_done "$run" || { echo "round9_select: $run has not finished (bash benchmarks/train_face_round9.sh $tier)" >&2; exit 2; }
convert_student "$tier" "$run" "$(calib_train_people)" "${@:4}"
name=edgeface_face_$tier
mkdir -p "$RES"
shipped=$(shipped_at "${3:-fe9d94c}" ${name}_int8.tflite)  # what the candidate must beat
step "held-out real faces + the 13 CelebA people: cosine to the teacher"
"$PY" benchmarks/domain_gap.py "$shipped" "$OUT/${name}_int8.tflite" --teacher "$TEACHER" \
  --celeba cache/celeba/arcface112 --set "utkface=$CLEAN/utkface" --set "all_age_faces=$CLEAN/all_age_faces" \
  --set "scut_fbp5500=$CLEAN/scut_fbp5500" --held-out 0.08 --sample 100000 --json "$RES/domain_gap.json"
step "the 13 CelebA people: pair accuracy"
"$PY" benchmarks/select_face_model.py cache/celeba/arcface112 "$shipped" "$OUT/${name}_int8.tflite" \
  --teacher "$TEACHER" --val-identities students --json "$RES/selection.json"
"$PY" benchmarks/round9_rule.py "$RES/domain_gap.json" "$RES/selection.json" \
  --shipped "$shipped" --candidate "$OUT/${name}_int8.tflite" --json "$RES/verdict.json"
# LFW only after the choice, as the report, and only for a candidate that ships
if "$PY" -c 'import json,sys; sys.exit(not json.load(open(sys.argv[1]))["ships"])' "$RES/verdict.json"; then
  step "LFW View 2 (the report): $OUT"
  "$EF" bench "$OUT"/${name}_*.tflite --lfw "$LFW" --pairs "$DATA/lfw/pairs.txt" \
    --json "$RES/lfw.json" --markdown "$RES/lfw.md"
  ship_note "$OUT" "$name"
fi
