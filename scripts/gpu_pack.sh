#!/usr/bin/env bash
# Packs what the GPU check needs on a device machine that has no Node and no oneDNN: the node
# binary, the CUDA build of the addon with the shared libraries it links, and the run-time
# packages (tsx, uvu, piscina). Run here after `npx cmake-js compile --out build-gpu`; writes
# .carry/gpu.tar.xz (ignored by git), which scripts/gpu_check.sh unpacks there.
set -euo pipefail
cd "$(dirname "$0")/.."
addon=build-gpu/Release/meshtrain.node
[ -f "$addon" ] || { echo "gpu_pack: $addon is missing: build it with npx cmake-js compile --out build-gpu" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/node_modules"
cp "$(readlink -f "$(command -v node)")" "$stage/bin/node"
cp "$addon" "$stage/lib/meshtrain.node"
# The addon's own shared libraries that a CUDA image lacks (libdnnl above all), by their sonames.
for so in $(ldd "$addon" | awk '/=>/ {print $1}' | grep -E '^lib(dnnl|OpenCL|gomp)\.'); do
  cp "$(ldd "$addon" | awk -v s="$so" '$1 == s {print $3}' | xargs readlink -f)" "$stage/lib/$so"
done
# Run-time packages only (no TypeScript compiler, linter or build tools).
for m in node_modules/*; do
  case "$(basename "$m")" in
    @biomejs|typescript|@types|cmake-js|node-api-headers|node-addon-api|.bin|.package-lock.json) ;;
    *) cp -r "$m" "$stage/node_modules/" ;;
  esac
done
mkdir -p .carry
XZ_OPT="-4 -T0" tar -C "$stage" -cJf .carry/gpu.tar.xz .
ls -la .carry/gpu.tar.xz
