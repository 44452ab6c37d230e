# Shared by the train_face_round*.sh scripts (source it): tools, the teacher, and the two steps
# every round repeats. Each step resumes, so a script can simply be rerun after an interruption.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EF="${EF:-.venv/bin/edgeface}"
PY="${PY:-.venv/bin/python}"
DATA="${EDGEFACE_DATA:-../shared/data}"
TEACHER=../shared/teachers/mobilefacenet-ncnn
STORE=cache/teacher_embeddings/insightface-mobilefacenet-ncnn_7a35d5328d61.npz

teacher_targets() {  # SRC_DIR SHARD_NAME: the teacher's embeddings of SRC_DIR on both cores (ncnn is
  # fastest single-threaded), merged into the trainer's store; a shard file already written is reused
  local src=$1 name=$2
  for k in 0 1; do
    nice -n 5 "$PY" -m edgeface.teachers.base "$TEACHER" "$src" "cache/teacher/${name}_shard$k.npz" --shard $k/2 &
  done
  wait
  "$PY" -m edgeface.teachers.base --merge "$STORE" "$STORE" "cache/teacher/${name}_shard0.npz" "cache/teacher/${name}_shard1.npz"
}

morph_set() {  # NAME SEED MODE: 60k label-free morphs of the aligned CelebA crops, then their teacher targets
  local name=$1 seed=$2 mode=$3
  nice -n 5 "$PY" -m edgeface.data.distill_sets morphs cache/celeba/arcface112 "cache/distill/$name" \
    --count 60000 --seed "$seed" --mode "$mode"
  teacher_targets "cache/distill/$name" "$name"
}

train_run() {  # RUN CONFIG: train runs/RUN with CONFIG on the 8-view CelebA set, resuming if it exists
  local run=$1 config=$2 resume=()
  if [ -f "runs/$run/config.toml" ]; then resume=(--resume); fi
  nice -n 5 "$EF" train face --data cache/celeba/views8 --out "runs/$run" --config "$config" "${resume[@]}"
}
