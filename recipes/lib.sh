# Shared by the recipes (source it): tools, data locations, and the steps recipes repeat. Every step
# skips work already done or resumes it, so a recipe can simply be rerun after an interruption.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EF="${EF:-.venv/bin/edgeface}"
PY="${PY:-.venv/bin/python}"
DATA="${EDGEFACE_DATA:-../shared/data}"          # read-only shared data (LFW, CelebA, expressions, teacher)
CLEAN="${EDGEFACE_CLEAN:-$(cd .. && pwd)/data/clean}"   # the cleaned public real-face sets (real_faces)
TEACHER=../shared/teachers/mobilefacenet-ncnn
STORE=cache/teacher_embeddings/insightface-mobilefacenet-ncnn_7a35d5328d61.npz
LFW="$DATA/lfw/lfw-deepfunneled"

step() { echo "== $(date +%H:%M:%S) $*" >&2; }

teacher_targets() {  # SRC_DIR SHARD_NAME: the teacher's embeddings of SRC_DIR on both cores (ncnn is
  # fastest single-threaded), merged into the trainer's store; a shard file already written is reused
  local src=$1 name=$2
  for k in 0 1; do
    [ -f "cache/teacher/${name}_shard$k.npz" ] ||
      nice -n 5 "$EF" teacher embed "$TEACHER" "$src" "cache/teacher/${name}_shard$k.npz" --shard $k/2 &
  done
  wait
  local old=(); [ -f "$STORE" ] && old=("$STORE")
  "$EF" teacher merge "$STORE" "${old[@]}" "cache/teacher/${name}_shard0.npz" "cache/teacher/${name}_shard1.npz"
}

celeba_views() {  # the aligned CelebA crops, their 8 views and the views' teacher targets (round 1's data)
  step "CelebA: align, 8 views, teacher targets"
  "$EF" align "$DATA/faces/celeba" cache/celeba/arcface112 --workers 2  # resumes from its manifest
  [ -f cache/celeba/views8/manifest.jsonl ] ||  # written last: a stopped run resumes
    "$EF" data views cache/celeba/arcface112 "$DATA/faces/celeba" cache/celeba/views8 --views 8
  teacher_targets cache/celeba/views8 views8
}

distill_round2() {  # round 2's label-free faces: 30k blends of two CelebA people + FER2013 training faces
  step "label-free faces: 30k morphs, FER2013 faces"
  [ -f cache/distill/celeba_morphs/manifest.jsonl ] ||
    nice -n 5 "$EF" data morphs cache/celeba/arcface112 cache/distill/celeba_morphs --count 30000
  [ -f cache/distill/fer2013_train/manifest.jsonl ] ||
    nice -n 5 "$EF" data faces "$DATA/expressions/fer2013/train" cache/distill/fer2013_train --views 2
  teacher_targets cache/distill/celeba_morphs celeba_morphs
  teacher_targets cache/distill/fer2013_train fer2013_train
}

morph_set() {  # NAME SEED MODE: 60k label-free morphs of the aligned CelebA crops, then their teacher targets
  local name=$1 seed=$2 mode=$3
  step "morph set $name (seed $seed, $mode)"
  [ -f "cache/distill/$name/manifest.jsonl" ] || nice -n 5 "$EF" data morphs cache/celeba/arcface112 \
    "cache/distill/$name" --count 60000 --seed "$seed" --mode "$mode"
  teacher_targets "cache/distill/$name" "$name"
}

real_faces() {  # the 39,207 cleaned public real faces with their teacher targets ($CLEAN)
  [ -f "$CLEAN/teacher_scut_fbp5500.npz" ] || DATA_OUT="$(dirname "$CLEAN")" bash benchmarks/rebuild_data.sh
}

calib_train_people() {  # prints cache/celeba/calib_train_people, made once: the aligned CelebA crops of the
  # students' training people only (not their 13 validation people, not CelebA's four LFW people), as symlinks:
  # int8 calibration faces that the shipping choice never scores
  [ -d cache/celeba/calib_train_people ] || "$PY" - <<'PY'
import os
from pathlib import Path
from edgeface.data.hygiene import CELEBA_STUDENT_VAL, LFW_PEOPLE_IN_CELEBA
src, out = Path("cache/celeba/arcface112").resolve(), Path("cache/celeba/calib_train_people")
tmp = out.with_name(out.name + ".tmp")
for person in sorted(p for p in src.iterdir() if p.is_dir() and p.name not in CELEBA_STUDENT_VAL + LFW_PEOPLE_IN_CELEBA):
    (tmp / person.name).mkdir(parents=True, exist_ok=True)
    for f in person.iterdir():
        if not (tmp / person.name / f.name).exists():
            os.symlink(f, tmp / person.name / f.name)
tmp.rename(out)
PY
  echo cache/celeba/calib_train_people
}

convert_student() {  # TIER RUN CALIB [CONVERT FLAGS...]: RUN's model as the tier ships it, into RUN/models
  # (MobileNetV2: float32, float16, int8; micro: int8 within 300,000 bytes + the TFLite Micro C array), plus any
  # flags (round 11: --per-tensor); kept once its int8 file exists
  local name=edgeface_face_$1 run=$2 calib=$3 dtypes extra=("${@:4}")
  case $1 in
    mnv2) dtypes=float32,float16,int8 ;;
    micro) dtypes=int8 extra+=(--budget 300000 --c-array) ;;
    *) echo "convert_student: unknown tier $1 (mnv2|micro)" >&2; return 2 ;;
  esac
  step "convert $run ($name, $dtypes)"
  [ -f "$run/models/${name}_int8.tflite" ] ||
    "$EF" convert "$run" --out "$run/models" --name "$name" --dtypes "$dtypes" --calib "$calib" "${extra[@]}"
}

grow_student() {  # INIT_TFLITE RECOVERED GROWN CONFIG: INIT_TFLITE recovered to Keras in RECOVERED, then
  # widened and deepened to CONFIG's architecture with its function kept (edgeface.nets.grow; round 11) into
  # GROWN; each step is kept once its model.keras exists
  local init=$1 rec=$2 grown=$3 config=$4
  [ -f "$rec/model.keras" ] || "$EF" import "$init" --out "$rec"
  step "grow $rec -> $grown ($config)"
  [ -f "$grown/model.keras" ] || "$PY" benchmarks/grow_student.py "$rec/model.keras" --config "$config" \
    --calib "$(calib_train_people)" --per-tensor --teacher "$TEACHER" --out "$grown"
}

shipped_at() {  # COMMIT FILE: prints the path of models/FILE as COMMIT shipped it, with its model card,
  # extracted once (round 4's students: fe9d94c; round 9's: 891e055)
  local f=cache/shipped_at/$1/$2 card=${2%.tflite}.json
  mkdir -p "$(dirname "$f")"
  [ -f "${f%.tflite}.json" ] || { git show "$1:models/$card" > "$f.json.tmp" && mv "$f.json.tmp" "${f%.tflite}.json"; }
  [ -f "$f" ] || { git show "$1:models/$2" > "$f.tmp" && mv "$f.tmp" "$f"; }
  echo "$f"
}

real_distill() {  # TIER INIT_TFLITE PEAK_LR EPOCHS RUN [RECOVERED [CONFIG]]: round 9 (face_models.md): the
  # student recovered from INIT_TFLITE into RECOVERED (default runs/recovered/TIER; a RECOVERED/model.keras
  # already there is used as it is), distilled on the CelebA views + the real faces with 8% of those held out,
  # frozen BatchNorm, relational term 10, the epoch kept by the mean of both validation cosines; CONFIG:
  # default recipes/configs/face_TIER_real.toml. Resumes, keeps a finished run
  local tier=$1 init=$2 lr=$3 epochs=$4 run=$5 rec=${6:-runs/recovered/$1} config=${7:-recipes/configs/face_$1_real.toml} resume=()
  real_faces
  [ -f "$rec/model.keras" ] || "$EF" import "$init" --out "$rec"
  run_done "$run" && return
  has_checkpoint "$run" && resume=(--resume)
  step "real-face distillation: $tier, $epochs epochs, peak lr $lr -> $run"
  nice -n 5 "$EF" train face --data cache/celeba/views8 --out "$run" --config "$config" \
    --set train.init="$rec/model.keras" --set "data.extra=[\"$CLEAN/utkface\", \"$CLEAN/all_age_faces\", \"$CLEAN/scut_fbp5500\"]" \
    --set data.extra_val_fraction=0.08 --set data.select=teacher_cos_both --set train.freeze_bn=true \
    --set optim.lr="$lr" --set optim.min_lr=1e-6 --set optim.warmup_epochs=0.0 --set loss.relational_weight=10.0 \
    --epochs "$epochs" "${resume[@]}"
}

has_checkpoint() {  # RUN_DIR: true when a training run there saved a checkpoint to resume from (a run cut
  # before its first checkpoint starts again)
  [ -f "$1/checkpoints/checkpoint" ]
}

run_done() {  # RUN_DIR: true when the training run there has finished (its run.json says "done")
  "$PY" -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])).get("status") != "done")' "$1/run.json" 2>/dev/null
}

train_run() {  # CONFIG: train runs/CONFIG with recipes/configs/CONFIG.toml (else the package config of
  # that name) on the 8-view CelebA set, resuming if the run exists; a finished run is kept
  local config=$1 resume=() file=recipes/configs/$1.toml
  [ -f "$file" ] || file=$1
  step "train runs/$config"
  if run_done "runs/$config"; then return; fi
  if has_checkpoint "runs/$config"; then resume=(--resume); fi
  nice -n 5 "$EF" train face --data cache/celeba/views8 --out "runs/$config" --config "$file" "${resume[@]}"
}

fit_teacher() {  # RUN NAME BUDGET DTYPES [convert --fit options]: import insightface's MobileFaceNet (ncnn)
  # into RUN, then prune + recover it until its int8 file fits BUDGET bytes (convert --fit resumes
  # from RUN/fit); recovery faces: CelebA training identities + the cleaned real-face sets
  local run=$1 name=$2 budget=$3 dtypes=$4; shift 4
  real_faces
  "$EF" align "$DATA/faces/celeba" cache/celeba/arcface112 --workers 2  # resumes from its manifest
  [ -f "$run/model.keras" ] || /usr/bin/time -f "import: %e s" "$EF" import "$TEACHER" --out "$run" --faces cache/celeba/arcface112
  step "prune to $budget bytes + recover (resumes from $run/fit)"
  /usr/bin/time -f "convert: %e s" "$EF" convert "$run" --out "$run/models" --name "$name" --budget "$budget" \
    --dtypes "$dtypes" --calib cache/celeba/arcface112 --fit-images 5000 \
    --fit-faces "$CLEAN/utkface" --fit-faces "$CLEAN/all_age_faces" --fit-faces "$CLEAN/scut_fbp5500" \
    --fit-teacher "$TEACHER" --c-array "$@"
}

convert_bench_expression() {  # RUN NAME DATA_DIR [CONVERT OPTION...]: the three dtypes of an expression run,
  # benched on the split its card records (never a test image for calibration: convert takes the run's train split)
  local run=$1 name=$2 data=$3
  shift 3
  step "convert $run"
  "$EF" convert "$run" --out "$run/models" --name "$name" --dtypes float32,float16,int8 "$@"
  step "bench $name"
  mkdir -p benchmarks/results/recipes
  "$EF" bench "$run/models/${name}"_{float32,float16,int8}.tflite --expr-data "$data" \
    --json "benchmarks/results/recipes/$name.json" --markdown "benchmarks/results/recipes/$name.md"
  ship_note "$run/models" "$name"
}

select_face() {  # NAME FILE...: compare embedders on held-out CelebA people (never LFW): the shipping choice
  local name=$1; shift
  step "choose $name on held-out CelebA (never LFW)"
  mkdir -p benchmarks/results/recipes
  "$PY" benchmarks/select_face_model.py cache/celeba/arcface112 "$@" --teacher "$TEACHER" \
    --json "benchmarks/results/recipes/${name}_selection.json"
}

bench_out() {  # NAME FILE...: LFW View 2 of the recipe's files into benchmarks/results/recipes/NAME.{json,md}
  local name=$1; shift
  step "bench $name"
  mkdir -p benchmarks/results/recipes
  "$EF" bench "$@" --lfw "$LFW" --pairs "$DATA/lfw/pairs.txt" \
    --json "benchmarks/results/recipes/$name.json" --markdown "benchmarks/results/recipes/$name.md"
}

ship_note() {  # DIR NAME: recipes never overwrite models/; say how to ship what they built
  echo "built $1/$2_*.tflite; compare with benchmarks/results/recipes/$2.md, then ship with: cp $1/$2_* models/" >&2
}
