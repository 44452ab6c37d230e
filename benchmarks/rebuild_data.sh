#!/usr/bin/env bash
# Issues 14/15: fetch, de-duplicate, align and LFW-clean the four public face sets into $DATA_OUT
# (outside the repository), with the teacher's targets beside each clean set. Resumable: every step
# skips what is already there (`edgeface align` resumes from its manifest).
#   bash benchmarks/rebuild_data.sh                     # with internet (clones the pinned commits)
#   MIRRORS=/work/.mirror bash benchmarks/rebuild_data.sh   # from local mirrors <owner>+<name>/repo
# Wall times on the 2-core machine (session 6, from the logs): get 19 s for all four, dedupe under a
# minute, align LFW 159 s, SCUT 59 s, UTKFace 325 s, All-Age-Faces 758 s; teacher targets LFW 233 s,
# SCUT 69 s, UTKFace 513 s, All-Age-Faces 149 s (there run beside the alignment: 25 min from get to
# the clean sets; this script runs them one after the other, about 40 min).
set -euo pipefail
cd "$(dirname "$0")/.."
EF="${EF:-.venv/bin/edgeface}"
PY="${PY:-.venv/bin/python}"
SHARED="${EDGEFACE_SHARED:-../shared}"
D="${DATA_OUT:-/work/data}"
T="$SHARED/teachers/mobilefacenet-ncnn"
mkdir -p "$D"
mirror() {  # --mirror DIR for a set, when MIRRORS is given
  [ -n "${MIRRORS:-}" ] && echo "--mirror $MIRRORS/$1/repo" || true
}
[ -d "$D/utkface" ] || "$EF" data get utkface "$D/utkface" $(mirror delonyohan+deeplearn-agepred)
[ -d "$D/all_age_faces" ] || "$EF" data get all_age_faces "$D/all_age_faces" $(mirror middleyuan+All-Age-Faces-Dataset)
[ -d "$D/scut_fbp5500" ] || "$EF" data get scut_fbp5500 "$D/scut_fbp5500" $(mirror qijialiv-cell+SCUT-FBP5500-Beauty-Score)
[ -d "$D/fer2013_train" ] || "$EF" data get fer2013_train "$D/fer2013_train" $(mirror darkbit404+FaceExp)
[ -d "$D/dedup" ] || "$EF" data dedupe "$D/utkface" "$D/all_age_faces" "$D/scut_fbp5500" "$D/fer2013_train" --out "$D/dedup"
"$EF" align "$SHARED/data/lfw/lfw-deepfunneled" "$D/aligned/lfw" --workers 2 --min-face-size 40
"$EF" align "$D/dedup/scut_fbp5500" "$D/aligned/scut_fbp5500" --workers 2 --min-face-size 40 --max-side 256
"$EF" align "$D/dedup/utkface" "$D/aligned/utkface" --workers 2 --min-face-size 40
"$EF" align "$D/dedup/all_age_faces" "$D/aligned/all_age_faces" --workers 2 --min-face-size 40 --max-side 256
mkdir -p "$D/teacher_cache"
for s in lfw scut_fbp5500 utkface all_age_faces; do
  "$EF" teacher embed "$T" "$D/aligned/$s" "$D/teacher_cache/teacher_$s.npz"
done
[ -d "$D/clean" ] || "$EF" data lfw-overlap "$D/aligned/utkface" "$D/aligned/all_age_faces" "$D/aligned/scut_fbp5500" \
  --lfw "$D/aligned/lfw" --teacher "$T" --out "$D/clean" --cache "$D/teacher_cache"
