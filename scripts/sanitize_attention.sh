#!/usr/bin/env bash
# compute-sanitizer over one pass of every fused attention kernel instance at tiny shapes
# (bench/gpu_attention_sanitize.ts: fa2 and WMMA, forward and backward, bf16/f16, head dims
# 32/64/128, causal and not, Tq != Tk, ragged T, aligned and unaligned operands): racecheck
# (shared-memory hazards: a missing __syncthreads or cp.async wait, which the emulated device's
# fibers can hide), synccheck (barriers in divergent code) and memcheck (out-of-bounds and
# misaligned accesses), in that order, each under its own timeout inside MT_SANITIZE_SECONDS (85:
# 45, 20, 20). Only kernels named *attn* are instrumented where the sanitizer takes --kernel-name.
# The pass stops starting cases halfway through each tool's time, GPT-2's cases first, so a slow
# sanitizer still reports on those. A block per tool, then the summary line last. Exit 1 on a
# finding, a failed case or a timeout.
#   scripts/sanitize_attention.sh          (scripts/gpu_check.sh's sanitize:attention step)
#   scripts/sanitize_attention.sh --find   prints compute-sanitizer's path, or fails
# No compute-sanitizer: one SKIP line, exit 0. A device the sanitizer refuses (gVisor machines
# answer "Device not supported"): noted, exit 0. MT_EMU=1: the emulated device has no driver to
# instrument, so the pass runs alone (the plumbing).
set -uo pipefail
cd "$(dirname "$0")/.."

findSanitizer() {
  local c
  for c in "${MT_COMPUTE_SANITIZER:-}" "$(command -v compute-sanitizer 2> /dev/null)" /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda-*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

pass=(node --import tsx bench/gpu_attention_sanitize.ts)
if [ "${1:-}" = --find ]; then
  findSanitizer
  exit
fi
if [ "${MT_EMU:-0}" = 1 ]; then
  echo "sanitize: the emulated device has no driver for compute-sanitizer; the pass alone"
  "${pass[@]}"
  exit
fi
cs=$(findSanitizer) || {
  echo "SKIP sanitize: compute-sanitizer not found (PATH, /usr/local/cuda*/bin, /opt/nvidia/*)"
  exit 0
}
total=${MT_SANITIZE_SECONDS:-85}
# Options this version takes: instrument the attention kernels only (the others run as usual), and
# leave API error codes to the pass (it fails on any it is given) so the count is the kernels' findings.
help=$("$cs" --help 2>&1)
filter=()
grep -q -- '--kernel-name' <<< "$help" && filter+=(--kernel-name kns=attn)
grep -q -- '--report-api-errors' <<< "$help" && filter+=(--report-api-errors no)
echo "sanitize: $cs ($("$cs" --version 2>&1 | grep -m1 -oE '[0-9]{4}\.[0-9.]+' || echo 'version ?')), options: ${filter[*]:-none}"
start=$SECONDS
rows=()
line=""
bad=0
for tool in racecheck synccheck memcheck; do
  share=$((20 * total / 85))
  [ "$tool" = racecheck ] && share=$((45 * total / 85))
  left=$((total - (SECONDS - start)))
  limit=$((share < left ? share : left))
  if [ "$limit" -lt 10 ]; then
    rows+=("$(printf '%-10s %-11s %s' "$tool" SKIP 'out of time')")
    line+="$tool SKIP; "
    continue
  fi
  log=$(mktemp /tmp/mt-sanitize.XXXXXX)
  t0=$SECONDS
  timeout -k 5 "$limit" "$cs" --tool "$tool" --error-exitcode 9 --print-limit 20 "${filter[@]}" \
    "${pass[@]}" --max-seconds $((limit / 2)) > "$log" 2>&1
  rc=$?
  secs=$((SECONDS - t0))
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$')
  cases=$(grep -oE '[0-9]+/[0-9]+ in [0-9]+/[0-9]+ cases, [0-9]+ failed' "$log" | tail -n 1)
  reached=$(echo "$cases" | grep -oE '^[0-9]+/[0-9]+')
  if grep -qE 'Device not supported|Unable to find injection library|not supported on this (device|platform)' "$log"; then
    status=UNSUPPORTED
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=TIMEOUT
  elif [ "$rc" = 9 ]; then status=FOUND
  elif [ "$rc" != 0 ]; then status=FAIL
  else status=clean
  fi
  echo "== $tool: $status (exit $rc) in ${secs}s of ${limit}s"
  # The sanitizer's own lines (its findings and summary), then the pass's case lines.
  grep -E '^========= ' "$log" | head -n 40
  grep -E '^  case |^    |not reached|^attention instances|^SKIP|rror:' "$log" | grep -v '^=========' | head -n 30
  rm -f "$log"
  rows+=("$(printf '%-10s %-11s %s' "$tool" "$status" "${errors:-?} errors; instances ${cases:-none reported}; ${secs}s")")
  line+="$tool $status (${errors:-?} errors, ${reached:-?} instances, ${secs}s); "
  case $status in
    clean) ;;
    UNSUPPORTED) break ;;  # the other tools would be refused the same way
    *) bad=1 ;;
  esac
done
echo "== sanitize summary (${total}s budget)"
printf '%s\n' "${rows[@]}"
# One line for gpu_check's summary table: each tool's status and error count.
echo "sanitize: ${line%; }"
exit "$bad"
