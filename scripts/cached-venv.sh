#!/usr/bin/env bash
# A venv cached by name and version outside the checkout, created once: the tools the tests and builds need
# but the peer must not depend on (TensorFlow, an older tflite-runtime). Prints the venv's python.
# Usage: scripts/cached-venv.sh NAME/VERSION "import check" "what it is (for the message)" PACKAGE...
set -euo pipefail

where="$1" check="$2" what="$3"
shift 3
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
venv="$cache/$where"
python="$venv/bin/python"

if [ -x "$python" ] && "$python" -c "import $check" >/dev/null 2>&1; then
  echo "$python"
  exit 0
fi
base="$(command -v python3.11 || command -v python3)"
echo "installing $what into $venv (once)" >&2
rm -rf "$venv"
"$base" -m venv "$venv"
"$python" -m pip install --quiet --upgrade pip >&2
"$python" -m pip install --quiet "$@" >&2
echo "$python"
