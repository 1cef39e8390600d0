#!/usr/bin/env bash
# The GPU validation, in one call of a device machine (H100/H200, CUDA 13, no Node there):
#   here:  npx cmake-js compile --out build-gpu && scripts/gpu_pack.sh
#   there: run(command: "MT_BENCH=1 bash scripts/gpu_check.sh", carry: [".carry/gpu.tar.xz"], timeout_s: 540)
# Steps, each under `timeout`, each going on after a failure, all inside MT_BUDGET seconds (480;
# with MT_BENCH=1 the tests leave the last 200 of them to the benchmarks):
#   report      GPU, driver, PyTorch's view (copy bandwidth), the addon's device and library report
#   tests       MT_JOBS at once (6 on the device, 1 emulated; OMP_NUM_THREADS 2 each there):
#     ops       the op-suite files parametrized over devices (test/helpers/devices.ts), CUDA half only, in one process
#     cuda_*    every test/unit/cuda_*.test.ts and test/dist/cuda_*.test.ts (globbed: new files join; key suites first)
#     ...       fp16 unscaling, SIMT attention, direct grouped conv, the launch census
#     sanitize:attention  compute-sanitizer racecheck/synccheck/memcheck over every attention kernel instance
#   bench       MT_BENCH=1, one at a time: bench/gpu.ts --quick (matmul vs cuBLASLt, GPT-2 MFU and ResNet-101
#               vs PyTorch, NCCL), the host floor, attention (vs PyTorch's SDPA), NCCL per-call cost, batch norm and pooling;
#               where the device time goes (bench/gpu_profile.ts: timed launch census of GPT-2 124M and
#               ResNet-101 steps), the memory-bound kernels alone (bench/gpu_memory_kernels.ts) and ncu's
#               per-kernel time of one GPT-2 step (skipped without ncu)
#   memcheck    MT_MEMCHECK=1: compute-sanitizer over cuda_ops (slower: for a second call)
# Only the tail of the output comes back, so each step prints its last lines and the summary
# table (step, status, seconds, key number) comes last. Full logs: $OUT/gpu_check.log, each step's
# own log in $OUT/steps.tar.gz, the table in $OUT/summary.txt, bench numbers in $OUT/bench_gpu.json,
# the device-time breakdowns in $OUT/profile.txt and ncu's CSV in $OUT/ncu_gpt.csv (the device tool
# brings back at most 8 files from $OUT: put anything more inside steps.tar.gz).
# MT_EMU=1 runs it here against an emulated-device build (MESHTRAIN_ADDON=.../meshtrain.node) with
# the local node: the plumbing is tested without a GPU (timings meaningless). MT_ONLY=regex keeps
# the steps whose name matches.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mt-gpu-out}
BUDGET=${MT_BUDGET:-480}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
teePid=$!
t=/tmp/mt-gpu
logs=$(mktemp -d /tmp/mt-gpu-logs.XXXXXX)  # one folder per run: runs here may overlap
trap 'rm -rf "$logs"' EXIT
if [ "${MT_EMU:-0}" = 1 ]; then
  [ -n "${MESHTRAIN_ADDON:-}" ] || { echo "gpu_check: MT_EMU=1 needs MESHTRAIN_ADDON pointing at the emulated-device build"; exit 1; }
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  rm -rf "$t" && mkdir -p "$t" && tar -C "$t" -xJf .carry/gpu.tar.xz ||
    { echo "gpu_check: cannot unpack .carry/gpu.tar.xz (run scripts/gpu_pack.sh here first)"; exit 1; }
  [ -e node_modules ] || ln -s "$t/node_modules" node_modules
  export PATH="$t/bin:$PATH" LD_LIBRARY_PATH="$t/lib:${LD_LIBRARY_PATH:-}"
  export MESHTRAIN_ADDON="$t/lib/meshtrain.node" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
fi
PY=${MT_PYTHON:-$(command -v /opt/torch/.venv/bin/python3 || command -v python3 || echo python3)}
export MT_PYTHON="$PY"
# NVIDIA's wheels keep their .so files under site-packages/nvidia/*/lib; the addon searches those
# too, but naming them makes the report's paths unambiguous.
libs=$("$PY" - <<'PY' 2>/dev/null
import glob, os, site
dirs = []
for s in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += glob.glob(os.path.join(s, 'nvidia', '*', 'lib')) + glob.glob(os.path.join(s, 'nvidia', 'cu*', 'lib'))
print(':'.join(sorted(set(d for d in dirs if os.path.isdir(d)))))
PY
)
# The emulated-device build brings its reference cuBLASLt in <build>/emu-lib.
emuLib="$(dirname "${MESHTRAIN_ADDON:-.}")/../emu-lib"
[ "${MT_EMU:-0}" = 1 ] && [ -d "$emuLib" ] && libs="$(cd "$emuLib" && pwd)${libs:+:$libs}"
export MESHTRAIN_CUDA_LIB_PATH="${MESHTRAIN_CUDA_LIB_PATH:-$libs}"
start=$SECONDS
summary=()
# Seconds kept back for the benchmark, so slow or hanging tests cannot crowd it out.
reserve=0
[ "${MT_BENCH:-0}" = 1 ] && reserve=${MT_RESERVE:-200}

# Rows of the summary, one file per step in launch order (steps may run in the background).
rows="$logs/rows"
mkdir -p "$rows"
nrow=0
# MT_JOBS test steps run at once (the device has 16 cores and one GPU; benchmarks always run alone).
jobsMax=${MT_JOBS:-$([ "${MT_EMU:-0}" = 1 ] && echo 1 || echo 6)}
parallel=0
running() { jobs -rp | wc -l; }
drain() { while [ "$(running)" -gt 0 ]; do sleep 0.5; done; }

# step NAME SECONDS CMD...: runs CMD under timeout (capped by what is left of the budget) into
# $logs/NAME.log, prints its last lines, and adds a row to the summary. While parallel=1 it runs in
# the background, at most MT_JOBS at once.
step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${MT_ONLY:-}" ] && ! [[ $name =~ $MT_ONLY ]]; then return; fi
  if [ "$parallel" = 1 ]; then
    while [ "$(running)" -ge "$jobsMax" ]; do sleep 0.5; done
  fi
  nrow=$((nrow + 1))
  local row
  row="$rows/$(printf %04d "$nrow")"
  local left=$((BUDGET - reserve - (SECONDS - start)))
  if [ "$left" -lt 15 ]; then
    printf '%-30s %-8s %6s  %s\n' "$name" SKIP 0 "out of budget (${BUDGET}s)" > "$row"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$parallel" = 1 ]; then
    runStep "$name" "$limit" "$row" "$@" &
  else
    runStep "$name" "$limit" "$row" "$@"
  fi
}

runStep() {
  local name=$1 limit=$2 row=$3
  shift 3
  local log="$logs/${name//[^A-Za-z0-9_.-]/_}.log"
  local t0=$SECONDS
  timeout -k 10 "$limit" bash -c '"$@"' step "$@" > "$log.raw" 2>&1
  local rc=$? secs=$((SECONDS - t0))
  sed 's/\x1b\[[0-9;]*m//g' "$log.raw" > "$log" && rm -f "$log.raw"  # colour codes stripped: readable tails, parseable counts
  local status key
  key=$(keyOf "$name" "$log")
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=TIMEOUT
  elif [ "$rc" != 0 ]; then status=FAIL
  elif grep -qE '^(SKIP |bench/gpu: ).*(no usable CUDA device|built without CUDA)' "$log"; then status=SKIP
  else status=PASS
  fi
  # One block per step, printed when it ends: failures and skips first, then the end of the log
  # (the output's tail is all that comes back).
  { echo "== $name: $status in ${secs}s (limit ${limit}s)"
    grep -E -A1 '^ *FAIL |^SKIP ' "$log" | grep -v '^--$' | head -n 8
    tail -n "${MT_TAIL:-4}" "$log"; } | cut -c1-200
  printf '%-30s %-8s %6s  %s\n' "$name" "$status" "$secs" "$key" > "$row"
}

# The key number of a step's log: uvu's pass count and skip lines, or the step's own last line.
keyOf() {
  local log=$2 total passed skips
  total=$(awk '/Total:/ {print $2}' "$log" | tail -1)
  if [ -n "$total" ]; then
    passed=$(awk '/Passed:/ {print $2}' "$log" | tail -1)
    skips=$(grep -c '^SKIP' "$log")
    echo "passed ${passed:-0}/$total${skips:+, $skips SKIP line(s)}" | sed 's/, 0 SKIP line(s)//'
  else
    grep -v '^\s*$' "$log" | tail -1 | cut -c1-160
  fi
}

uvu() { node --import tsx node_modules/uvu/bin.js "$@"; }
export -f uvu

report() {
  echo "-- nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || echo "(no nvidia-smi)"
  echo "-- wheel lib dirs: $MESHTRAIN_CUDA_LIB_PATH"
  ls $(echo "$MESHTRAIN_CUDA_LIB_PATH" | tr ':' ' ') 2>/dev/null | grep -E '^lib(cublasLt|nccl|cudnn)\.so' || true
  echo "-- PyTorch's view (device-to-device copy bandwidth, bytes read + written)"
  timeout 60 "$MT_PYTHON" - <<'PY' || echo "(PyTorch check failed)"
import torch
if not torch.cuda.is_available(): raise SystemExit('torch sees no CUDA device')
x = torch.empty(1 << 30, dtype=torch.uint8, device='cuda'); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
e0.record(); [y.copy_(x) for _ in range(10)]; e1.record(); e1.synchronize()
print(torch.cuda.get_device_name(0), 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version(), 'nccl', torch.cuda.nccl.version(),
      'copy %.0f GB/s' % (2 * 10 * x.numel() / (e0.elapsed_time(e1) / 1e3) / 1e9))
PY
  echo "-- meshtrain"
  node --import tsx --input-type=module -e "
import { native, cudaLibraries, cudaDeviceProperties, cudaIsAvailable } from './src/index.ts';
const info = native.deviceInfo();
console.log(JSON.stringify(info));
if (cudaIsAvailable()) console.log(JSON.stringify(cudaDeviceProperties('cuda:0')));
const libs = cudaLibraries();
console.log(JSON.stringify(libs, null, 1));
const found = Object.entries(libs).filter(([k, v]) => k !== 'searchDirs' && v.found).map(([k]) => k);
console.log('cudaDevices ' + info.cudaDevices + ', libraries found: ' + (found.join(' ') || 'none'));
if (info.cudaDevices < 1) process.exit(3);
"
}

export -f report

# One GPT-2 step's kernels under ncu (bench/gpu_profile.ts --ncu-step profiles only inside
# cudaProfilerStart/Stop), then their times summed by kernel (bench/ncu_summary.ts).
ncuProfile() {
  rm -f "$OUT/ncu_gpt.csv"
  "$NCU" --clock-control none --cache-control none --profile-from-start off --target-processes application-only \
    --metrics gpu__time_duration.sum --csv --log-file "$OUT/ncu_gpt.csv" \
    node --import tsx bench/gpu_profile.ts --ncu-step "$@" || { echo "ncu exited $?"; tail -n 20 "$OUT/ncu_gpt.csv" 2>/dev/null; return 1; }
  node --import tsx bench/ncu_summary.ts "$OUT/ncu_gpt.csv"
}
export -f ncuProfile
export OUT
step report 90 report
# Tests first, MT_JOBS at a time; then the benchmarks, one at a time, in the last `reserve` seconds.
parallel=1
# The op suite's files (deviceTest: CPU and cuda:0) in one process: one start-up instead of one per file; uvu names each file.
ops=$(grep -l "^ *deviceTest(" test/unit/*.test.ts 2>/dev/null | xargs -n1 basename | sed 's/\.test\.ts$//' | paste -sd'|')
[ -n "$ops" ] && step ops 240 env MT_TEST_DEVICES=cuda:0 node --import tsx node_modules/uvu/bin.js test/unit "^($ops)\\.test\\.ts\$"
# compute-sanitizer racecheck, synccheck and memcheck over one pass of every fused attention kernel instance at tiny
# shapes (scripts/sanitize_attention.sh: the races the emulated device's fibers can hide; expected 30-60 s on an H200,
# started early so it overlaps the suites below).
if [ "${MT_EMU:-0}" = 1 ] || scripts/sanitize_attention.sh --find > /dev/null; then
  step sanitize:attention 90 scripts/sanitize_attention.sh
  # Again with the fa2 kernels at 32 query rows per warp (forward, and the backward's dQ): their own barriers and staging.
  step sanitize:attention:rows32 90 env MESHTRAIN_FA2_ROWS=32 MESHTRAIN_FA2_BWD_ROWS=32 scripts/sanitize_attention.sh
elif [ -z "${MT_ONLY:-}" ] || [[ sanitize:attention =~ $MT_ONLY ]]; then
  nrow=$((nrow + 1))
  printf '%-30s %-8s %6s  %s\n' sanitize:attention SKIP 0 'compute-sanitizer not found' > "$rows/$(printf %04d "$nrow")"
fi
# The CUDA suites, the most telling first (the budget may end before the last ones), then the rest in name order.
first="unit/cuda_runtime unit/cuda_ops unit/cuda_train unit/cuda_engine unit/cuda_step_syncs unit/cuda_attention unit/cuda_attention_qkv unit/cuda_nccl
unit/cuda_conv unit/cuda_engine_fp16 unit/cuda_linear_epilogue unit/cuda_linear_gelu dist/cuda_zero"
for name in $first $(for f in test/unit/cuda_*.test.ts test/dist/cuda_*.test.ts; do
  n=${f#test/}; n=${n%.test.ts}; [[ " ${first//$'\n'/ } " == *" $n "* ]] || echo "$n"; done); do
  f="test/$name.test.ts"
  [ -e "$f" ] || continue
  dir=$(dirname "$f") base=$(basename "$f")
  step "$name" 180 uvu "$dir" "^${base//./\\.}\$"
done
# fp16 engine steps whose true gradients are ~1e-8 (unscaled in f32 by the optimizer kernels), ZeRO 0-3 on cuda:0 and the CPU.
step unit/fp16_unscale_f32 120 uvu test/unit '^fp16_unscale_f32\.test\.ts$'
# The device-decided step's rules on the GPU's arithmetic: stepDecision and the fp16 scaler's update bit for bit their CPU twins.
step unit/step_decision 120 uvu test/unit '^(step_decision|loss_scaler_update)\.test\.ts$'
# GPT's vocabulary padded inside the model (makeVocabSizeDivisibleBy) vs unpadded on cuda:0 (not a cuda_* file): within TOL there.
step unit/gpt_padded_vocab 150 uvu test/unit '^gpt_padded_vocab\.test\.ts$'
# bf16/f16 attention once more on the SIMT kernels (by default cuDNN runs head dims 64/128, fa2 or WMMA the rest).
step unit/cuda_attention:simt 150 env MESHTRAIN_ATTENTION=simt node --import tsx node_modules/uvu/bin.js test/unit '^cuda_attention(_qkv)?\.test\.ts$'
# And on the WMMA kernels alone (attention_tc.cu).
step unit/cuda_attention:tc 150 env MESHTRAIN_ATTENTION=tc node --import tsx node_modules/uvu/bin.js test/unit '^cuda_attention(_qkv)?\.test\.ts$'
# The fa2 family with its forward and the backward's dQ kernel at 32 query rows per warp (head dims <= 64;
# the fa2 suites also run both variants themselves and check them bit for bit against each other).
step unit/cuda_attention_fa2:rows32 180 env MESHTRAIN_ATTENTION=fa2 MESHTRAIN_FA2_ROWS=32 MESHTRAIN_FA2_BWD_ROWS=32 node --import tsx node_modules/uvu/bin.js test/unit '^cuda_attention(_qkv|_fa2|_fa2_bwd)?\.test\.ts$'
# And on the fa2 family alone (the default before stop 21 made cuDNN's fused attention graphs it: the ops step and
# the cuda_attention files above run cuDNN at head dims 64/128, each plan built at first use, maybe compiling
# kernels at run time (NVRTC)).
step unit/cuda_attention:fa2 180 env MESHTRAIN_ATTENTION=fa2 node --import tsx node_modules/uvu/bin.js test/unit '^cuda_attention(_qkv)?\.test\.ts$'
# Grouped/dilated/depthwise conv2d on the direct kernels (the ops step runs it through cuDNN).
step ops:conv_groups:direct 120 env MT_TEST_DEVICES=cuda:0 MESHTRAIN_CUDA_CONV=direct node --import tsx node_modules/uvu/bin.js test/unit '^conv_groups\.test\.ts$'
# Launch census of one bf16 GPT engine step, per layer and outside (counts, not times: docs/gpu.md).
step census 120 node --import tsx bench/gpu_census.ts
drain
parallel=0
reserve=0
if [ "${MT_BENCH:-0}" = 1 ]; then
  # On the emulated device the sizes shrink (--smoke): it checks the plumbing, not speed.
  size=$([ "${MT_EMU:-0}" = 1 ] && echo --smoke)
  # Issue 8's benchmark: matmul vs cuBLASLt, GPT-2 124M MFU and vs PyTorch (its step ~10 s: start-up, both
  # vocabularies; shared with bench:gpt:tc through the cache file), ResNet-101 vs PyTorch, NCCL.
  step bench 300 node --import tsx bench/gpu.ts "${size:---quick}" --peer-cache "$logs/torch_gpt.json"
  # Where the device time goes (second, before the budget runs short): the timed launch census of one
  # step each of GPT-2 124M (as (b) times it, and through initialize()) and ResNet-101 (as (c)); top
  # sites, by file, op time vs wall ($OUT/profile.txt).
  step bench:profile 120 node --import tsx bench/gpu_profile.ts $size
  # The memory-bound kernels alone at GPT-2 124M's and ResNet-101's shapes (layer norm, cross-entropy, residual add,
  # embedding, AdamW, batch norm, pool): us, least bytes, GB/s and the ratio to a same-size device copy (~15 s on an H200).
  step bench:memory_kernels 60 node --import tsx bench/gpu_memory_kernels.ts $size
  # GPT-2 124M MFU again on the WMMA attention (the default before stop 19's H200 run made fa2 it):
  # what the default buys (OUT unset: bench_gpu.json keeps the full run).
  step bench:gpt:tc 90 env -u OUT MESHTRAIN_ATTENTION=tc node --import tsx bench/gpu.ts "${size:---quick}" --only b --peer-cache "$logs/torch_gpt.json"
  # And with the fa2 kernels at 32 query rows per warp (forward and dQ): whether the variant moves the step.
  step bench:gpt:rows32 90 env -u OUT MESHTRAIN_ATTENTION=fa2 MESHTRAIN_FA2_ROWS=32 MESHTRAIN_FA2_BWD_ROWS=32 node --import tsx bench/gpu.ts "${size:---quick}" --only b --peer-cache "$logs/torch_gpt.json"
  # And on fa2 (the default before stop 21): what cuDNN's fused attention buys.
  step bench:gpt:fa2 90 env -u OUT MESHTRAIN_ATTENTION=fa2 node --import tsx bench/gpu.ts "${size:---quick}" --only b --peer-cache "$logs/torch_gpt.json"
  # And cuDNN's backward through its f32 dQ accumulator (not bit-reproducible; the default is the deterministic one).
  step bench:gpt:cudnn_acc 120 env -u OUT MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC=0 node --import tsx bench/gpu.ts "${size:---quick}" --only b --peer-cache "$logs/torch_gpt.json"
  # GPT-2's LM head with the padded row pitch for its 50257-wide logits on and off (MESHTRAIN_PAD_LD): its three
  # products alone and the 124M step; bench (b)'s vocab-50257 row has it on (~10 s on an H200).
  step bench:row_pitch 60 node --import tsx bench/gpu_row_pitch.ts $size
  # ResNet-101 (c) again with MESHTRAIN_CUDNN_BENCHMARK=1 (cuDNN's timed algorithm search per conv plan, during the
  # warm-up): ours eager and graphed; the last line sets its img/s beside the bench step's (its JSON in a subfolder,
  # so bench_gpu.json keeps the main run).
  step bench:resnet:cudnn_benchmark 150 bash -c 'mkdir -p "$2/cudnn_benchmark" && OUT="$2/cudnn_benchmark" MESHTRAIN_CUDNN_BENCHMARK=1 node --import tsx bench/gpu.ts "$1" --only c; rc=$?; node --import tsx bench/cudnn_benchmark_compare.ts "$2/cudnn_benchmark/bench_gpu.json" "$2/bench_gpu.json"; exit $rc' _ "${size:---quick}" "$OUT"
  # GPT-2 124M bf16 engine step at batch 1: wall ms synchronized and forward+backward host issue time (docs/host_floor.md).
  step bench:host_floor 50 node --import tsx bench/gpu_host_floor.ts --steps 20 --json "$OUT/host_floor.json"
  # GPT-2 124M bf16 with dropout 0.1: eager vs forward+backward as a CUDA graph (masks from the device's generator base), 8x1024 and 1x1024.
  step bench:graph_dropout 90 node --import tsx bench/gpu_graph_dropout.ts $size
  # GPT-2 124M bf16 engine step (initialize(), ZeRO 0, DeepSpeed's GPT recipe: AdamW, clipping 1.0, WarmupDecayLR) at 8x1024 and 1x1024:
  # host-decided eager vs device-decided eager vs the whole step as a CUDA graph, interleaved; device and host ms/step, host waits,
  # first steps bit for bit (a)'s. JSON inside steps.tar.gz ($OUT's file count is at the device tool's limit).
  step bench:engine_step 90 node --import tsx bench/gpu_engine_step.ts $size --json "$logs/engine_step.json"
  # Host µs per call: N-API, add on cpu/cuda:0, single runtime calls and matmul 64^3 vs cuBLASLt, each / the empty-kernel launch floor.
  step bench:host_ops 60 node --import tsx bench/gpu_host_ops.ts $size
  # Where the eager step's host time goes on the real driver: V8 samples of 100 steps by file and function,
  # native calls (addon + driver) apart from our TypeScript and GC ($OUT/host_profile.cpuprofile).
  step bench:host_profile 60 node --import tsx bench/host_profile.ts --steps 100 --out "$OUT/host_profile.cpuprofile"
  # The host floor step again on the emulated device (the carried emu/ build, kernels skipped) on this
  # machine's CPU: the same host code without a driver, to set beside bench:host_floor's issue time.
  emuAddon=$([ "${MT_EMU:-0}" = 1 ] && echo "$MESHTRAIN_ADDON" || echo "$t/emu/Release/meshtrain.node")
  if [ -f "$emuAddon" ]; then
    step bench:host_floor:emu 90 env MESHTRAIN_ADDON="$emuAddon" MESHTRAIN_CUDA_LIB_PATH="$(dirname "$emuAddon")/../emu-lib" \
      MESHTRAIN_CUDA_EMU_SKIP_WORK=1 node --import tsx bench/gpu_host_floor.ts --steps 300
  fi
  # Fused attention at GPT-2 124M's shape, each family beside PyTorch's SDPA (measured once, ~5 s, then cached).
  step bench:attention 60 node --import tsx bench/gpu_attention.ts $size --peer-cache "$logs/torch_attention.json"
  step bench:attention:simt 60 env MESHTRAIN_ATTENTION=simt node --import tsx bench/gpu_attention.ts $size --peer-cache "$logs/torch_attention.json"
  # The WMMA kernels alone.
  step bench:attention:tc 60 env MESHTRAIN_ATTENTION=tc node --import tsx bench/gpu_attention.ts $size --peer-cache "$logs/torch_attention.json"
  # The fa2 kernels at 32 query rows per warp: the whole bench with them, then 16 vs 32 rows alone (forward; backward
  # with dQ at each), alternating rounds in one process.
  step bench:attention:rows32 60 env MESHTRAIN_ATTENTION=fa2 MESHTRAIN_FA2_ROWS=32 MESHTRAIN_FA2_BWD_ROWS=32 node --import tsx bench/gpu_attention.ts $size --peer-cache "$logs/torch_attention.json"
  step bench:attention_rows 90 env MESHTRAIN_ATTENTION=fa2 node --import tsx bench/gpu_attention_rows.ts $size
  # The fa2 kernels (bench:attention above runs cuDNN's graphs, compared with fa2 on the device, and says whether
  # cuDNN ran: plans, calls, refusals).
  step bench:attention:fa2 90 env MESHTRAIN_ATTENTION=fa2 node --import tsx bench/gpu_attention.ts $size --peer-cache "$logs/torch_attention.json"
  # The backward alone, WMMA vs mma.sync in one process (D 64 and 128), and their gradients compared on the device.
  step bench:attention_bwd 90 node --import tsx bench/gpu_attention_bwd.ts $size
  # NCCL per-call cost: non-blocking communicators (every call returns ncclInProgress and is polled) vs blocking ones.
  step bench:nccl 60 node --import tsx bench/gpu_nccl.ts --quick
  step bench:nccl:blocking 60 env MESHTRAIN_NCCL_NONBLOCKING=0 node --import tsx bench/gpu_nccl.ts --quick
  # Batch norm and max pool at ResNet-101's largest layers (bf16, batch 128): time and implied GB/s.
  step bench:bn_pool 60 node --import tsx bench/gpu_bn_pool.ts $size
  # ResNet-101 bf16 step now vs with BN's weight casts and the 3x3 filter copies back (flags masked): device ops and ms.
  step bench:resnet_copies 90 node --import tsx bench/gpu_resnet_copies.ts $size
  # ResNet-101 bf16 step with ReLU and residual add fused into batch norm vs the separate ops (batchNormRelu masked).
  step bench:resnet_bn_relu 90 node --import tsx bench/gpu_resnet_copies.ts --flags batchNormRelu $size
  # SGD over ResNet-101's 314 parameters, many per launch (sgd_multi.cu) vs one launch each: launches, host and device ms;
  # then SGD and AdamW captured alone in a CUDA graph (the slot-reading kernels) vs eager: device ms per step.
  step bench:sgd_multi 90 node --import tsx bench/gpu_sgd_multi.ts $size
  # ncu's own time per kernel (gpu__time_duration.sum, clocks and caches left alone) of one GPT-2 124M
  # step inside cudaProfilerStart/Stop: CSV to $OUT/ncu_gpt.csv, summed into $OUT/profile.txt.
  NCU=${MT_NCU:-$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | tail -n 1)}
  if [ -n "$NCU" ] && [ -x "$NCU" ]; then
    export NCU
    step bench:ncu 150 ncuProfile $size
  elif [ -z "${MT_ONLY:-}" ] || [[ bench:ncu =~ $MT_ONLY ]]; then
    nrow=$((nrow + 1))
    printf '%-30s %-8s %6s  %s\n' bench:ncu SKIP 0 'ncu not on the PATH (nor under /opt/nvidia/nsight-compute)' > "$rows/$(printf %04d "$nrow")"
  fi
fi
if [ "${MT_MEMCHECK:-0}" = 1 ]; then
  if command -v compute-sanitizer > /dev/null; then
    step memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
      node --import tsx node_modules/uvu/bin.js test/unit '^cuda_ops\.test\.ts$'
  else
    nrow=$((nrow + 1))
    printf '%-30s %-8s %6s  %s\n' memcheck SKIP 0 'compute-sanitizer not on the PATH' > "$rows/$(printf %04d "$nrow")"
  fi
fi

tar -C "$logs" -czf "$OUT/steps.tar.gz" . 2>/dev/null
fails=$(cat "$rows"/* 2>/dev/null | grep -cE ' (FAIL|TIMEOUT) ')
{
  echo
  echo "== gpu_check summary ($((SECONDS - start))s of ${BUDGET}s; full logs in \$OUT: gpu_check.log, steps.tar.gz)"
  printf '%-30s %-8s %6s  %s\n' step status secs key
  cat "$rows"/* 2>/dev/null
  echo "== $fails step(s) failed or timed out"
} | tee "$OUT/summary.txt"
exec 1>&- 2>&-
wait "$teePid" 2>/dev/null  # the log's last lines are written before the call returns
[ "$fails" = 0 ]
