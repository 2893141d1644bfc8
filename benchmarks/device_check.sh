#!/usr/bin/env bash
# al_keras on the device machine's own image (JAX with CUDA, no TensorFlow,
# no network): installs the carried wheels (bash benchmarks/device_wheels.sh,
# run beforehand where pip reaches a registry) into a temporary folder, uses
# al_keras from this working tree, and runs benchmarks/device_check.py on
# Keras' JAX backend, which writes device_check.json and device_check.md
# under --out. At most 500 s (400 s with --smoke, on a CPU), pip aside.
#
#   bash benchmarks/device_check.sh [--smoke] [--out DIR] [--wheels DIR] [ARGS...]
#
# --out defaults to $OUT, else /tmp/device_check; --wheels to $WHEELS, else
# .whl; $PYTHON (default python3) is the interpreter; ARGS go to the script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-python3}"
OUTDIR="${OUT:-/tmp/device_check}"
WHEELDIR="${WHEELS:-.whl}"
DATA=.data/fashion-mnist
SMOKE=()
LIMIT=500
ARGS=()

die() { echo "device_check.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=(--smoke); LIMIT=400; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUTDIR="$2"; shift 2 ;;
    --out=*) OUTDIR="${1#*=}"; shift ;;
    --wheels) [ $# -ge 2 ] || die "--wheels needs a folder"; WHEELDIR="$2"; shift 2 ;;
    --wheels=*) WHEELDIR="${1#*=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

shopt -s nullglob
wheels=("$WHEELDIR"/*.whl)
[ ${#wheels[@]} -gt 0 ] || die "no wheels in $WHEELDIR: run bash benchmarks/device_wheels.sh first"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] ||
  die "no Fashion-MNIST in $DATA: run bash benchmarks/device_wheels.sh first"
mkdir -p "$OUTDIR"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
  --no-compile --target "$tmp" "${wheels[@]}" || die "pip could not install ${wheels[*]}"

export PYTHONPATH="$tmp:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
echo "device_check.sh: $("$PY" -c 'import sys; print(sys.version.split()[0])') (Python)," \
     "out $OUTDIR, at most ${LIMIT} s"
rc=0
timeout --kill-after=10 "$LIMIT" "$PY" benchmarks/device_check.py --out="$OUTDIR" \
  --data_dir="$DATA" ${SMOKE[@]+"${SMOKE[@]}"} ${ARGS[@]+"${ARGS[@]}"} || rc=$?
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || echo "device_check.sh: stopped at its ${LIMIT} s limit" >&2
exit "$rc"
