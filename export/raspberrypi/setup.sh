#!/usr/bin/env bash
# Make a venv with the edgeface on-device runtime: numpy, opencv-python-headless, click, tqdm
# and the LiteRT interpreter (ai-edge-litert). No TensorFlow.
#
#   bash export/raspberrypi/setup.sh [VENV_DIR]        (default: ~/edgeface-venv)
#
# It installs the wheel `make wheel` built (dist/edgeface-*.whl, copied beside this script or into the
# current folder), else the edgeface checkout it sits in. edgeface is on no package index.
# Extra pip options (e.g. a local wheel folder): PIP_ARGS="--find-links ./wheels" bash setup.sh
set -euo pipefail

VENV="${1:-$HOME/edgeface-venv}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "setup.sh: error: $("$PYTHON" -V 2>&1) found; edgeface on the Pi needs Python 3.11+ (Raspberry Pi OS Bookworm, aarch64)" >&2
    exit 2
fi
case "$(uname -m)" in
    aarch64|x86_64|arm64) ;;
    *) echo "setup.sh: warning: $(uname -m) has no ai-edge-litert wheel; use the 64-bit (aarch64) Raspberry Pi OS" >&2 ;;
esac
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup.sh: error: Python's venv module is missing: sudo apt install python3-venv" >&2
    exit 2
fi

WHEEL="$(ls -t "$HERE"/edgeface-*.whl ./edgeface-*.whl "$REPO"/dist/edgeface-*.whl 2>/dev/null | head -n 1 || true)"
if [ -n "$WHEEL" ]; then
    TARGET="$WHEEL[runtime]"
elif [ -f "$REPO/pyproject.toml" ] && grep -q '^name = "edgeface"' "$REPO/pyproject.toml"; then
    TARGET="$REPO[runtime]"
else
    echo "setup.sh: error: no edgeface-*.whl here or beside setup.sh, and not in a checkout: run \`make wheel\` on the workstation and copy dist/edgeface-*.whl over" >&2
    exit 2
fi

echo "setup.sh: creating $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
echo "setup.sh: installing $TARGET"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet ${PIP_ARGS:-} "$TARGET"

# Prove the install: the interpreter loads the shipped detector and finds nothing on a blank image.
"$VENV/bin/python" - <<'PY'
import sys
import numpy as np
from edgeface.runtime.detector import Detector
from edgeface.runtime.interpreter import interpreter_class
d = Detector()
assert d.detect(np.full((120, 160, 3), 127, np.uint8)) == []
blocked = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")]
assert not blocked, blocked
print(f"setup.sh: ok: interpreter {interpreter_class()[1]}, detector loaded, no TensorFlow")
PY
echo "setup.sh: done. Activate with: source $VENV/bin/activate   then: edgeface verify A.jpg B.jpg --model models/edgeface_face_int8.tflite"
