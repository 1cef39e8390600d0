#!/usr/bin/env bash
# The GPU validation, in one call of a device machine (H100/H200, CUDA 13, no Node there):
#   here:  npx cmake-js compile --out build-gpu && scripts/gpu_pack.sh
#   there: run(command: "bash scripts/gpu_check.sh", carry: [".carry/gpu.tar.xz"], timeout_s: 300)
#   (MT_BENCH=1 adds bench/gpu.ts --quick; MT_MEMCHECK=1 runs the op suite under compute-sanitizer:
#   slower, for a second call when a failure needs explaining)
# It unpacks .carry/gpu.tar.xz, points the loader at the Python wheels' NVIDIA libraries (cuBLAS,
# NCCL), prints the device and library report, and runs the CUDA test files. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mt-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
t=/tmp/mt-gpu
rm -rf "$t" && mkdir -p "$t" && tar -C "$t" -xJf .carry/gpu.tar.xz || { echo "gpu_check: cannot unpack .carry/gpu.tar.xz (run scripts/gpu_pack.sh here first)"; exit 1; }
[ -e node_modules ] || ln -s "$t/node_modules" node_modules
export PATH="$t/bin:$PATH" LD_LIBRARY_PATH="$t/lib:${LD_LIBRARY_PATH:-}"
export MESHTRAIN_ADDON="$t/lib/meshtrain.node" OMP_NUM_THREADS=4
# NVIDIA's wheels keep their .so files under site-packages/nvidia/*/lib; the addon searches
# those too, but naming them here makes the report's paths unambiguous.
libs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = []
for s in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += glob.glob(os.path.join(s, 'nvidia', '*', 'lib')) + glob.glob(os.path.join(s, 'nvidia', 'cu*', 'lib'))
print(':'.join(sorted(set(d for d in dirs if os.path.isdir(d)))))
PY
)
export MESHTRAIN_CUDA_LIB_PATH="$libs"
echo "== device"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "== wheel lib dirs: $libs"
ls $(echo "$libs" | tr ':' ' ') 2>/dev/null | grep -E 'libcublasLt|libnccl' || true
echo "== meshtrain report"
node --import tsx --input-type=module -e "
import { native, cudaLibraries, cudaDeviceProperties, cudaIsAvailable } from './src/index.ts';
console.log(JSON.stringify(native.deviceInfo()));
if (cudaIsAvailable()) console.log(JSON.stringify(cudaDeviceProperties('cuda:0')));
console.log(JSON.stringify(cudaLibraries(), null, 1));
" || echo "REPORT FAILED"
status=0
devices=$(node --import tsx --input-type=module -e "import { native } from './src/index.ts'; console.log(native.deviceInfo().cudaDevices)" 2>/dev/null | tail -1)
if [ "${devices:-0}" = "0" ]; then echo "FAILED: the addon sees no CUDA device (the tests below only print SKIP)"; status=1; fi
for f in cuda_runtime cuda_ops cuda_train; do
  echo "== test/unit/$f.test.ts"
  timeout 240 node --import tsx node_modules/uvu/bin.js test/unit "^$f\.test\.ts$" || { echo "FAILED: $f"; status=1; }
done
echo "== bf16 matmul 4096^3 through meshtrain (median of 20, after 3 warm-ups)"
timeout 60 node --import tsx --input-type=module -e "
import { randn, matmul, tidy, cudaSynchronize } from './src/index.ts';
const a = randn([4096, 4096]).to('bf16').to('cuda:0'), b = randn([4096, 4096]).to('bf16').to('cuda:0');
const times = [];
for (let i = 0; i < 23; i++) {
  cudaSynchronize('cuda:0');
  const t0 = performance.now();
  tidy(() => { matmul(a, b); cudaSynchronize('cuda:0'); });
  if (i >= 3) times.push(performance.now() - t0);
}
times.sort((x, y) => x - y);
const ms = times[10];
console.log('median ' + ms.toFixed(3) + ' ms, ' + (2 * 4096 ** 3 / ms / 1e9).toFixed(1) + ' TFLOP/s (host-timed, includes the launch)');
" || { echo "FAILED: matmul timing"; status=1; }
if [ "${MT_BENCH:-0}" = 1 ]; then
  echo "== bench/gpu.ts (matmul vs cuBLASLt direct, GPT-2 124M bf16 step and MFU)"
  timeout 240 node --import tsx bench/gpu.ts --quick || { echo "FAILED: bench/gpu.ts"; status=1; }
fi
if [ "${MT_MEMCHECK:-0}" = 1 ] && command -v compute-sanitizer > /dev/null; then
  echo "== compute-sanitizer memcheck over the op suite (out-of-bounds and misaligned accesses, API errors)"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    node --import tsx node_modules/uvu/bin.js test/unit '^cuda_ops\.test\.ts$' > "$OUT/memcheck.log" 2>&1
  rc=$?
  tail -25 "$OUT/memcheck.log"
  case $rc in 0) echo "memcheck: clean" ;; 124) echo "memcheck: timed out (not a failure of the code)" ;; *) echo "FAILED: memcheck exit $rc"; status=1 ;; esac
fi
echo "== done, status $status"
exit $status
