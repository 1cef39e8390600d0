#!/usr/bin/env bash
# Packs what the GPU check needs on a device machine that has no Node and no oneDNN: the node
# binary, the CUDA build of the addon with the shared libraries it links, and the run-time
# packages (tsx with esbuild, uvu, piscina). Run here after `npx cmake-js compile --out build-gpu`;
# writes .carry/gpu.tar.xz (ignored by git), which scripts/gpu_check.sh unpacks there. The device
# call carries at most 64 MiB in all (working tree included): the size is printed and checked.
# MT_PACK_ADDON and MT_PACK_OUT override the addon and the tarball's path. The emulated-device
# build (MT_PACK_EMU, default build-emu; `none` leaves it out) goes along as emu/, so the check can
# time the host floor without a driver on the device machine's own CPU (bench:host_floor:emu).
set -euo pipefail
cd "$(dirname "$0")/.."
addon=${MT_PACK_ADDON:-build-gpu/Release/meshtrain.node}
out=${MT_PACK_OUT:-.carry/gpu.tar.xz}
[ -f "$addon" ] || { echo "gpu_pack: $addon is missing: build it with npx cmake-js compile --out build-gpu" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/node_modules"
cp "$(readlink -f "$(command -v node)")" "$stage/bin/node"
cp "$addon" "$stage/lib/meshtrain.node"
emu=${MT_PACK_EMU:-build-emu}
if [ "$emu" != none ] && [ -f "$emu/Release/meshtrain.node" ]; then
  mkdir -p "$stage/emu/Release"
  cp "$emu/Release/meshtrain.node" "$stage/emu/Release/"
  cp -r "$emu/emu-lib" "$stage/emu/"
fi
# The addon's own shared libraries that a CUDA image lacks (libdnnl above all), by their sonames.
for so in $(ldd "$addon" | awk '/=>/ {print $1}' | grep -E '^lib(dnnl|OpenCL|gomp)\.'); do
  cp "$(ldd "$addon" | awk -v s="$so" '$1 == s {print $3}' | xargs readlink -f)" "$stage/lib/$so"
done
# Run-time packages only (no TypeScript compiler, linter or build tools).
for m in node_modules/*; do
  case "$(basename "$m")" in
    @biomejs|typescript|@typescript|@types|cmake-js|node-api-headers|node-addon-api|.bin|.package-lock.json) ;;
    *) cp -r "$m" "$stage/node_modules/" ;;
  esac
done
mkdir -p "$(dirname "$out")"
XZ_OPT="-6 -T0" tar -C "$stage" -cJf "$out" .
bytes=$(stat -c %s "$out")
echo "gpu_pack: $out $((bytes / 1048576)) MiB ($bytes bytes; the device call carries 64 MiB in all, working tree included)"
[ "$bytes" -lt $((56 * 1048576)) ] || { echo "gpu_pack: too large for one device call" >&2; exit 1; }
