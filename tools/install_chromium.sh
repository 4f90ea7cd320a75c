#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (tests/test_tensorboard_browser.py), which
# loads TensorBoard's views in headless Chromium. Does nothing when a chromium is already on
# PATH. CI runs it as root on a clean machine; elsewhere it uses sudo.
set -euo pipefail

log() { echo "[install-chromium] $*"; }

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi

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

if ! command -v apt-get >/dev/null; then
  log "apt-get not found: install Chromium by hand (the browser test skips without it)" >&2
  exit 1
fi
log "installing Chromium: apt-get update ..."
as_root apt-get update
log "installing Chromium: apt-get install chromium ..."
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
log "$(chromium --version)"
