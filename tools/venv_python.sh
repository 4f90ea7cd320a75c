#!/usr/bin/env bash
# Python interpreter of Bazel's Python toolchain (//tools:venv_python_runtime): runs the
# project's virtualenv, <repository>/.venv/bin/python, wherever the clone lies.
# Bazel runs this file through a runfiles symlink; following the links leads back to the
# source tree, whose .venv holds TensorFlow, Beam, TFX and pytest (made by `make setup`).
set -euo pipefail
script="$(readlink -f "${BASH_SOURCE[0]}")"
repo="$(dirname "$(dirname "$script")")"
python="$repo/.venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "venv_python.sh: $python not found; run \`make setup\` in $repo first" >&2
  exit 127
fi
exec "$python" "$@"
