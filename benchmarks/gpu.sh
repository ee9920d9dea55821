#!/usr/bin/env bash
# One prepared GPU run (under 8 minutes on a current data-centre GPU): install the project, check every
# metric on the device against its CPU value, print frames/s per metric and a full eval's
# video-seconds per wall-second, with the device named.
#
#   bash benchmarks/gpu.sh                 # on a machine with CUDA
#   bash benchmarks/gpu.sh --device cpu    # the dry run: the same script with the CPU on both sides
#
# Options after the script's name go to benchmarks/gpu_check.py (--device, --clips, --size).
# SKIP_INSTALL=1 uses the environment as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[test]"
fi
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python benchmarks/gpu_check.py "$@"
