#!/usr/bin/env bash
# models/edgeface_expr_fer_{float32,float16,int8}.tflite: the VGG-style expression CNN on the full
# FER2013 training split (exact duplicates and PublicTest copies removed), benchmarks/expressions.md.
# Needs internet for `data get` (or EDGEFACE_FER_MIRROR=<git dir of darkbit404/FaceExp>).
#   make recipe NAME=edgeface_expr_fer      (a finished step is skipped; training: a 72-min run, then
#   a warm restart (recipes/configs/expression_fer_warm.toml, about 65 min), then round 4 from it with random
#   erasing + mixup (expression_fer_mix.toml, about 78 min), then round 5: round 4 distilled into itself
#   (expression_fer_kd.toml, about 86 min); the card recommends flip TTA (chosen on validation)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROOT="$(dirname "$CLEAN")"
RUN=runs/expr/fer_full_vgg
mirror=(); [ -n "${EDGEFACE_FER_MIRROR:-}" ] && mirror=(--mirror "$EDGEFACE_FER_MIRROR")
step "FER2013 train split (28,709 files), dedupe against PublicTest"
[ -d "$ROOT/fer2013_train" ] || "$EF" data get fer2013_train "$ROOT/fer2013_train" "${mirror[@]}"
[ -d "$ROOT/dedup_fer_pt" ] ||
  "$EF" data dedupe "$ROOT/fer2013_train" --held-out "$DATA/expressions/fer2013/test" --out "$ROOT/dedup_fer_pt"
mkdir -p "$ROOT/fer2013_full"
[ -e "$ROOT/fer2013_full/train" ] || ln -s "$ROOT/dedup_fer_pt/fer2013_train" "$ROOT/fer2013_full/train"
[ -e "$ROOT/fer2013_full/test" ] || ln -s "$(realpath "$DATA/expressions/fer2013/test")" "$ROOT/fer2013_full/test"
step "train $RUN"
[ -f "$RUN/model.keras" ] || nice -n 5 "$EF" train expression --data "$ROOT/fer2013_full" \
  --config edgeface/train/configs/expression_fer_full.toml --time-limit-min 72 --out "$RUN"
# each warm restart's config names the run it starts from (init)
for cycle in warm:fer_warm_vgg mix:fer_mix_vgg kd:fer_kd_vgg; do
  RUN=runs/expr/${cycle#*:}
  # round 5 starts from, and is taught by, round 4 (a session without round 4's run imports the shipped
  # float32 file into runs/expr/fer_mix_recovered instead: benchmarks/expressions.md, round 5)
  [ "$cycle" != kd:fer_kd_vgg ] || [ -e runs/expr/fer_mix_recovered ] || ln -s fer_mix_vgg runs/expr/fer_mix_recovered
  step "train $RUN (a warm restart, recipes/configs/expression_fer_${cycle%%:*}.toml)"
  [ -f "$RUN/model.keras" ] || nice -n 5 "$EF" train expression --data "$ROOT/fer2013_full" \
    --config "recipes/configs/expression_fer_${cycle%%:*}.toml" --time-limit-min 115 --out "$RUN"
done
convert_bench_expression "$RUN" edgeface_expr_fer "$DATA/expressions/fer2013" --tta flip
