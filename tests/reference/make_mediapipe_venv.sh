#!/usr/bin/env bash
# The reference environment of the MediaPipe and THEval comparisons: mediapipe 0.10.21 (the last release
# with the legacy mp.solutions.face_mesh and its bundled models) pins numpy<2 and protobuf<5, so it lives
# in a venv of its own (default: <repo>/.venv-mediapipe; the tests find it there or at
# $LIPSYNC_BENCH_MEDIAPIPE_PYTHON). Only what face_mesh imports is installed (no jax, about 25 s), and
# silero-vad 5.1.2's model (THEval's pin) is kept beside it.
set -euo pipefail
venv="${1:-$(cd "$(dirname "$0")/../.." && pwd)/.venv-mediapipe}"
python -m venv "$venv"
"$venv/bin/pip" install -q --no-deps mediapipe==0.10.21
"$venv/bin/pip" install -q "numpy<2" "protobuf>=4.25.3,<5" "opencv-contrib-python<4.12" absl-py attrs flatbuffers matplotlib
"$venv/bin/python" -c "import mediapipe as mp; mp.solutions.face_mesh.FaceMesh" 2>/dev/null
# THEval pins silero-vad 5.1.2: its model, out of that wheel, beside the venv (weights entry silero-vad-5.1.2)
"$venv/bin/pip" download -q --no-deps silero-vad==5.1.2 -d "$venv/wheels"
"$venv/bin/python" - "$venv" <<'PY'
import glob, sys, zipfile
venv = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{venv}/wheels/silero_vad-5.1.2-*.whl")[0]) as wheel:
    open(f"{venv}/silero_vad-5.1.2.jit", "wb").write(wheel.read("silero_vad/data/silero_vad.jit"))
PY
echo "reference venv ready: $venv/bin/python"
