#!/usr/bin/env bash
# Creates a venv with tflite-runtime 2.14.0 and numpy<2 (what armv7 Pis run) once, cached outside the checkout,
# so the tests check on x86_64 that the committed .tflite models run on that older runtime too. It holds only
# the runtime, numpy and safetensors: the tests put the checkout on PYTHONPATH. Prints the venv's python.
set -euo pipefail

version="${1:-2.14.0}"
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
venv="$cache/tflite-runtime/$version"
python="$venv/bin/python"

if [ -x "$python" ] && "$python" -c 'import tflite_runtime.interpreter, numpy, safetensors' >/dev/null 2>&1; then
  echo "$python"
  exit 0
fi
base="$(command -v python3.11 || command -v python3)"
echo "installing tflite-runtime $version into $venv (once)" >&2
rm -rf "$venv"
"$base" -m venv "$venv"
"$python" -m pip install --quiet --upgrade pip >&2
"$python" -m pip install --quiet "tflite-runtime==$version" "numpy==1.24.4" safetensors >&2
echo "$python"
