#!/usr/bin/env bash
# On a machine with one GPU: CIFAR-10 VGG and ResNet-20 configs, AL and BP,
# ~2 minutes each (8 minutes in all), on SYNTHETIC CIFAR-shaped data (no
# CIFAR-10 is reachable from the project's machines). Prints accuracy on the
# synthetic task and training examples/s. Usage: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"
python benchmarks/gpu_check.py --seconds_per_run="${SECONDS_PER_RUN:-110}" "$@"
