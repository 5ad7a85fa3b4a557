#!/usr/bin/env bash
# Creates a venv with tflite-runtime 2.14.0 and numpy<2 (what the arm Pis run: armv7 and aarch64) once, cached outside the checkout,
# so the tests check on x86_64 that the committed .tflite models run on that older runtime too. It holds only
# the runtime, numpy and safetensors: the tests put the checkout on PYTHONPATH. Prints the venv's python.
set -euo pipefail

version="${1:-2.14.0}"
exec "$(dirname "$0")/cached-venv.sh" "tflite-runtime/$version" "tflite_runtime.interpreter, numpy, safetensors" \
  "tflite-runtime $version" "tflite-runtime==$version" "numpy==1.24.4" safetensors
