#!/usr/bin/env bash
# Installs what meshtrain needs on Debian/Ubuntu: oneDNN, a C++ toolchain and cmake (through
# apt-get when root, or sudo when available), then the npm packages, which build the addon, then
# the emulated-device addon for the CUDA tests.
set -euo pipefail
cd "$(dirname "$0")"

packages=(libdnnl-dev cmake g++ make python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: missing system packages: ${missing[*]} (run as root or install them yourself)" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci
# The emulated-device addon (test tool, docs/gpu.md): test/unit/cuda_emu.test.ts runs the CUDA
# suites against it on machines without a GPU. MESHTRAIN_SKIP_EMU=1 leaves it out.
if [ "${MESHTRAIN_SKIP_EMU:-0}" != 1 ]; then
  start=$SECONDS
  npx cmake-js compile --out build-emu --CDMESHTRAIN_CUDA_EMU=ON
  echo "setup: emulated-device build (build-emu) took $((SECONDS - start)) s"
fi
