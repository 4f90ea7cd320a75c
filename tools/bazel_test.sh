#!/usr/bin/env bash
# `make bazel-test`: runs the fast unit tests (//tests, minus those tagged "heavy") with
# Bazel, offline. Installs Debian's Bazel first when it is missing (CI runs this as root
# on a clean machine). Extra arguments go to `bazel test`, e.g.
#   bash tools/bazel_test.sh //tests:test_vocabulary
#   bash tools/bazel_test.sh --test_tag_filters=heavy    (only the heavy ones)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BAZEL=/usr/bin/bazel
MOCK_REPOS=/usr/src/bazel-bootstrap/mock_repos

log() { echo "[bazel-test] $*"; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

# Debian's bazel-bootstrap (Bazel 4.2.3) works offline; its -source package holds the
# mock repositories the WORKSPACE points at. Any other bazel (e.g. bazelisk) would try
# to download, so this script always uses /usr/bin/bazel from that package.
install_bazel() {
  if [[ -x "$BAZEL" && -d "$MOCK_REPOS" ]] && dpkg-query -W -f='${Status}' bazel-bootstrap 2>/dev/null | grep -q 'ok installed'; then
    return
  fi
  command -v apt-get >/dev/null || { log "apt-get not found: install Debian's bazel-bootstrap and bazel-bootstrap-source by hand" >&2; exit 1; }
  log "installing Bazel: apt-get update ..."
  as_root apt-get update
  log "installing Bazel: apt-get install bazel-bootstrap bazel-bootstrap-source ..."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    bazel-bootstrap bazel-bootstrap-source
}

install_bazel
if [[ ! -x .venv/bin/python ]]; then
  log "no .venv/bin/python in $ROOT: run \`make setup\` first (or \`make bazel-test\`)" >&2
  exit 1
fi
# The launcher stub Bazel writes for every py_test runs on `python3` from PATH.
command -v python3 >/dev/null || export PATH="$ROOT/.venv/bin:$PATH"

log "bazel-bootstrap $(dpkg-query -W -f='${Version}' bazel-bootstrap), python $(.venv/bin/python -c 'import platform; print(platform.python_version())')"

# Without compiled bytecode every test pays ~10 s more to import TensorFlow. The sandbox
# cannot write into .venv, so when the venv has none (uv does not compile; pytest may
# have run with PYTHONDONTWRITEBYTECODE), the tests keep it in one writable folder.
cache_flags=()
if ! compgen -G ".venv/lib/python3*/site-packages/tensorflow/__pycache__/*.pyc" >/dev/null; then
  PYCACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/peterrec/bazel-pycache"
  mkdir -p "$PYCACHE"
  cache_flags=(--test_env=PYTHONPYCACHEPREFIX="$PYCACHE" --sandbox_writable_path="$PYCACHE")
  log "bytecode cache for the tests: $PYCACHE"
fi

targets=("$@")
has_target=0
for arg in "$@"; do [[ "$arg" != -* ]] && has_target=1; done
(( has_target )) || targets+=("//tests/...")

log "bazel test ${targets[*]} (tests tagged heavy are skipped; pytest runs them)"
start=$SECONDS
"$BAZEL" test \
  --test_tag_filters=-heavy \
  "${cache_flags[@]}" \
  "${targets[@]}"
log "done in $((SECONDS - start)) s"
