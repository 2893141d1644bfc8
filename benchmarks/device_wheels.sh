#!/usr/bin/env bash
# Run once, here (pip reaches a registry): fetch the wheels that the device
# machine's image lacks, and the Fashion-MNIST idx files, for
# benchmarks/device_check.sh there (which carries `.whl` and `.data`).
#
# The image (/work/.library/device/KINDS.md) has Python 3.12, jax/jaxlib with
# CUDA plugins, numpy, absl-py, h5py, ml-dtypes, rich, packaging,
# typing-extensions, scikit-learn, matplotlib and PyYAML, but no keras,
# optree or namex: what `import keras, al_keras` needs on Keras' JAX backend,
# at the versions tested here (ml_collections, train.py's configs, stays out).
#
#   bash benchmarks/device_wheels.sh [--python-version 3.12] [--dest .whl]
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=3.12
DEST=.whl
LIMIT_MIB=48
WHEELS=(keras==3.15.1 optree==0.20.0 namex==0.1.0)
FASHION=/usr/share/datasets/fashion-mnist
DATA=.data/fashion-mnist

die() { echo "device_wheels.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) [ $# -ge 2 ] || die "--python-version needs a value (e.g. 3.12)"
                      PYVER="$2"; shift 2 ;;
    --python-version=*) PYVER="${1#*=}"; shift ;;
    --dest) [ $# -ge 2 ] || die "--dest needs a folder"; DEST="$2"; shift 2 ;;
    --dest=*) DEST="${1#*=}"; shift ;;
    *) die "unknown option '$1' (usage: device_wheels.sh [--python-version X.Y] [--dest DIR])" ;;
  esac
done
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || die "--python-version must look like 3.12, not '$PYVER'"
[ -n "$DEST" ] || die "--dest must not be empty"

mkdir -p "$DEST" && rm -f "$DEST"/*.whl   # one version of each
PY="${PYTHON:-python3}"
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "$PYVER" "${platforms[@]}" -d "$DEST" "${WHEELS[@]}" ||
  die "pip download failed for ${WHEELS[*]} (Python $PYVER)"

[ -d "$FASHION" ] || die "no Fashion-MNIST at $FASHION"
mkdir -p "$DATA"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
         t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$FASHION/$f.gz" ] || die "missing $FASHION/$f.gz"
  cp "$FASHION/$f.gz" "$DATA/"
done

# One line per file, then the total that travels.
total=0
for f in "$DEST"/*.whl "$DATA"/*.gz; do
  size=$(stat -c %s "$f")
  total=$((total + size))
  awk -v s="$size" -v f="$f" 'BEGIN { printf "%8.2f MiB  %s\n", s / 1048576, f }'
done
awk -v s="$total" 'BEGIN { printf "%8.2f MiB  total\n", s / 1048576 }'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  die "the wheels and data are over ${LIMIT_MIB} MiB (a device call carries at most 64)"
fi
