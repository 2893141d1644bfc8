#!/usr/bin/env bash
# Every GPU claim of al_keras in one run (at most 8 minutes on one GPU):
# AL vs BP examples/s (VGG, ResNet-20; float32, mixed_bfloat16; XLA),
# BlockParallel on 2 logical GPUs, Ray stages sharing the GPU, a Fashion-MNIST
# learning check, and the machine's facts.  Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh --json=/tmp/gpu_check.json \
#       [--fashion_mnist_dir=DIR]       # on the GPU machine, venv active
#   bash benchmarks/gpu_check.sh --smoke --json=/tmp/smoke.json   # on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "gpu_check.sh: no nvidia-smi (no NVIDIA GPU here)"
fi
if ! "$PYTHON" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('tensorflow', 'keras', 'al_keras')))"; then
  echo "gpu_check.sh: $PYTHON cannot import tensorflow, keras and al_keras: make the" \
       "venv with the README's install command (pip install -e '.[ray]') and activate it" >&2
  exit 2
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
