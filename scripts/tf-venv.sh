#!/usr/bin/env bash
# Creates the venv with tensorflow-cpu that builds the .tflite models (scripts/build_tflite_models.py) once and
# caches it by TensorFlow version outside the checkout (about 1.6 GB): TensorFlow never enters the peer's
# dependencies. Prints the venv's python. Usage: scripts/tf-venv.sh [TF_VERSION]
set -euo pipefail

version="${1:-${TF_VERSION:-2.21.0}}"
# safetensors: the build imports the peer's model package for the layouts
exec "$(dirname "$0")/cached-venv.sh" "tf-venv/$version" "tensorflow, safetensors" \
  "tensorflow-cpu $version (about 1.6 GB)" "tensorflow-cpu==$version" safetensors
