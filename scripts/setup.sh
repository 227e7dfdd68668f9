#!/usr/bin/env bash
# Sets ferkit up on Debian 12 with Node 20: libtorch (Debian's libtorch-dev, or the
# one in $LIBTORCH), npm dependencies, the native binding, and the TypeScript build.
# Idempotent: each step is skipped when its result is already up to date.
# Usage: scripts/setup.sh [--test]   (--test also installs what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  # "install ok installed" only: a removed package whose config files remain is still listed.
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# 1. libtorch: Debian's, unless the user points LIBTORCH at their own.
if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/include" ] && [ -d "$LIBTORCH/lib" ] || { log "LIBTORCH=$LIBTORCH has no include/ and lib/"; exit 1; }
else
  apt_install libtorch-dev
fi
# OpenBLAS instead of the reference BLAS that libblas3 provides: about 1.5x faster training.
# ffmpeg (with ffprobe): `ferkit predict` decodes and writes videos through it.
# libgloo-dev: the headers of Gloo, the collectives library of libtorch's c10d (native/src/dist.cc).
apt_install make g++ python3 libopenblas0-pthread ffmpeg libgloo-dev

# The tests also open reports in a real browser (Debian's Chromium, driven by playwright-core),
# write PyTorch/TorchScript/ONNX files to check they are refused (python3-torch), a real
# HEIC photo (heif-enc from libheif-examples), and join two "machines" made of network
# namespaces for the data-parallel tests (ip from iproute2).
if [ "${1:-}" = "--test" ]; then
  apt_install chromium python3-torch libheif-examples iproute2
fi

# 2. npm dependencies, when package-lock.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund >&2
fi

# 3. The native binding, when a source file, the build file or LIBTORCH changed.
addon=native/build/Release/ferkit_torch.node
stamp=native/build/libtorch.stamp
want="${LIBTORCH:-debian}"
if [ ! -f "$addon" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ -n "$(find native/src native/binding.gyp scripts/torch-paths.cjs -newer "$addon" 2>/dev/null)" ]; then
  log "building the libtorch binding (native/) against ${want}"
  npx node-gyp rebuild --directory native -j 2 --loglevel=warn >&2
  echo "$want" >"$stamp"
fi

# 4. TypeScript (incremental).
npx tsc -b
