#!/usr/bin/env bash
# Creates the venv with tensorflow-cpu that builds the .tflite models (scripts/build_tflite_models.py) once and
# caches it by TensorFlow version outside the checkout (about 1.6 GB): TensorFlow never enters the peer's
# dependencies. Prints the venv's python. Usage: scripts/tf-venv.sh [TF_VERSION]
set -euo pipefail

version="${1:-${TF_VERSION:-2.21.0}}"
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
venv="$cache/tf-venv/$version"
python="$venv/bin/python"

if [ -x "$python" ] && "$python" -c 'import tensorflow, safetensors' >/dev/null 2>&1; then
  echo "$python"
  exit 0
fi
base="$(command -v python3.11 || command -v python3)"
echo "installing tensorflow-cpu $version into $venv (about 1.6 GB, once)" >&2
rm -rf "$venv"
"$base" -m venv "$venv"
"$python" -m pip install --quiet --upgrade pip >&2
# safetensors: the build imports the peer's model package for the layouts
"$python" -m pip install --quiet "tensorflow-cpu==$version" safetensors >&2
echo "$python"
